"""Algorithm 1 end to end: data -> stage 1 -> stage 2 -> saved run -> offline metrics."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl import __version__
from deepprl.artifacts import build_actor, build_model, run_split, save_run, write_json
from deepprl.config import RunConfig
from deepprl.data.registry import load_dataset
from deepprl.eval.offline import evaluate_recommender
from deepprl.recommender import Recommender
from deepprl.rl.ddpg import Critic
from deepprl.train.stage1 import Progress, fit_predictor, prediction_error
from deepprl.train.stage2 import build_trajectories, fit_policy

log = logging.getLogger("deepprl.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_run(config: RunConfig, out: str | Path, *, progress: Progress | None = None
              ) -> dict[str, Any]:
    """Train DeepPRL as configured, save it under `out`, return (and save) its metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        return _train(config, out, progress)
    finally:
        log.removeHandler(handler)
        handler.close()


def _train(config: RunConfig, out: Path, progress: Progress | None) -> dict[str, Any]:
    started = time.perf_counter()
    seed_everything(config.seed)
    data = load_dataset(config.dataset)
    split = run_split(data, config)
    log.info("deepprl %s, seed %d, data %s: %d events, %d users, %d items, objectives %s",
             __version__, config.seed, data.name, data.n_events, data.n_users, data.n_items,
             data.objective_names)
    model = build_model(config, data)
    train_events = np.flatnonzero(split.train)
    stage1 = fit_predictor(model, data, train_events, config.train, seed=config.seed,
                           progress=progress)
    for record in stage1:
        log.info("stage 1 %s", record)
    mae = prediction_error(model, data, np.flatnonzero(split.test))
    log.info("test MAE of the logged items: %s", mae)

    for p in model.parameters():  # stage 2 sees a frozen stage-1 model
        p.requires_grad_(False)
    actor = build_actor(config, model, data)
    critic = Critic(state_dim=model.state_dim, context_dim=data.context.shape[1],
                    n_objectives=data.n_objectives, hidden=config.policy.hidden,
                    layers=config.policy.layers, use_context=config.policy.use_context)
    recommender = Recommender(model, actor, data)
    env = build_trajectories(recommender, data, split.train, config.policy, k=config.eval.k,
                             max_candidates=config.train.max_candidates, seed=config.seed)
    stage2 = fit_policy(actor, critic, env, config.policy, k=config.eval.k, seed=config.seed,
                        progress=progress)
    for record in stage2[:: max(1, len(stage2) // 10)]:
        log.info("stage 2 %s", record)
    save_run(out, config, model, actor, data)
    write_json(out / "seed.txt", config.seed)

    metrics = evaluate_recommender(recommender, config)
    metrics.update({"dataset": data.name, "seed": config.seed, "test_mae": mae,
                    "stage1": stage1, "stage2_last": stage2[-1],
                    "seconds": time.perf_counter() - started})
    write_json(out / "metrics.json", metrics)
    log.info("metrics %s", {m: metrics[m] for m in ("learned", "equal") if m in metrics})
    return metrics
