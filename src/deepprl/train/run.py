"""Algorithm 1 end to end: data -> stage 1 -> stage 2 -> saved run -> offline metrics.

Item-level baselines take their own path: build -> fit -> save -> the same evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl import __version__
from deepprl.artifacts import (
    build_item_policy,
    build_model,
    build_policy,
    rebuild_item_policy,
    save_item_run,
    save_run,
    write_json,
)
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.splits import Split
from deepprl.distributed import SINGLE, World, barrier, process_group, user_shard
from deepprl.eval.offline import evaluate_ranker
from deepprl.eval.static_weights import (
    top_k_mean_reward,
    tune_static_weights,
    tune_weights,
    validation_set,
)
from deepprl.policy.weights import FixedWeights
from deepprl.provenance import code_version
from deepprl.recommender import ItemRanker, Recommender
from deepprl.train.preflight import preflight
from deepprl.train.stage1 import Progress, fit_predictor, prediction_error
from deepprl.train.stage2 import TRAJECTORY_LEARNERS, build_trajectories
from deepprl.zoo import models

log = logging.getLogger("deepprl.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_run(config: RunConfig, out: str | Path, *, progress: Progress | None = None
              ) -> dict[str, Any]:
    """Train the configured model, save it under `out`, return (and save) its metrics.

    Launched by torchrun with several processes, training is data-parallel (see
    deepprl.distributed) and only rank 0 writes `out`; the other ranks return
    {"rank": r, ...} without metrics."""
    out = Path(out)
    with process_group() as world:
        if not world.main:
            return _train(config, out, progress, world)
        out.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(out / "train.log", mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            return _train(config, out, progress, world)
        finally:
            log.removeHandler(handler)
            handler.close()


def _train(config: RunConfig, out: Path, progress: Progress | None, world: World
           ) -> dict[str, Any]:
    started = time.perf_counter()
    entry = models().get(config.name)
    if entry is None:
        raise ValueError(f"unknown model {config.name!r}; expected one of {sorted(models())}")
    if world.distributed and (entry.item_policy is not None
                              or config.policy.algorithm not in ("ddpg", "static")):
        raise ValueError(f"data-parallel training (torchrun) covers the weighted models with "
                         f"policy ddpg or static; run {config.name!r} in one process")
    seed_everything(config.seed)
    data = load_dataset(config.dataset)
    log.info("deepprl %s, model %s, seed %d, data %s: %d events, %d users, %d items, "
             "objectives %s; %d process(es)", __version__, config.name, config.seed,
             data.name, data.n_events, data.n_users, data.n_items, data.objective_names,
             world.size)
    plan = preflight(config, data)  # every stage's precondition, before any training
    split = plan.split
    if entry.item_policy is not None:
        metrics = _train_item_policy(config, data, split, out)
    else:
        metrics = _train_weighted(config, data, split, out, progress, world)
    if not world.main:
        barrier(world)
        return {"rank": world.rank, "world_size": world.size, "model": config.name}
    metrics.update({"model": config.name, "dataset": data.name, "seed": config.seed,
                    "seconds": time.perf_counter() - started, "world_size": world.size,
                    "code": code_version(), "validation": plan.validation})
    write_json(out / "seed.txt", config.seed)
    write_json(out / "metrics.json", metrics)
    log.info("metrics %s", {m: metrics[m] for m in ("learned", "equal") if m in metrics})
    barrier(world)
    return metrics


def _train_weighted(config: RunConfig, data: Interactions, split: Split, out: Path,
                    progress: Progress | None, world: World = SINGLE) -> dict[str, Any]:
    model = build_model(config, data)
    stage1 = fit_predictor(model, data, np.flatnonzero(split.train), config.train,
                           seed=config.seed, progress=progress, world=world)
    for record in stage1:
        log.info("stage 1 %s", record)
    mae = prediction_error(model, data, np.flatnonzero(split.test)) if world.main else {}
    log.info("test MAE of the logged items: %s", mae)

    for p in model.parameters():  # stage 2 sees a frozen stage-1 model
        p.requires_grad_(False)
    recommender = Recommender(model, build_policy(config, model, data), data)
    k = config.eval.k
    weights = None
    if config.policy.algorithm == "static":  # cheap and deterministic: every rank alike
        weights, stage2 = tune_static_weights(recommender, data, split, k=k,
                                              trials=config.policy.static_trials,
                                              seed=config.seed)
        recommender.policy = FixedWeights(torch.from_numpy(weights.astype(np.float32)))
        log.info("static weights tuned on validation: %s", weights.tolist())
    else:
        policy_config, pool = config.policy, split.train | split.valid
        if world.distributed:  # this rank's users' trajectories, and its share of the cap
            pool = pool & user_shard(data.user, world)
            policy_config = dataclasses.replace(
                policy_config, max_events=-(-policy_config.max_events // world.size))
        env = build_trajectories(recommender, data, pool, policy_config,
                                 k=k, max_candidates=config.train.max_candidates,
                                 seed=config.seed)
        learner = TRAJECTORY_LEARNERS[config.policy.algorithm]
        extra = {"world": world} if world.distributed else {}
        stage2 = learner(recommender.policy, env, config.policy, k=k, seed=config.seed,
                         progress=progress, **extra)
    for record in stage2[:: max(1, len(stage2) // 10)]:
        log.info("stage 2 %s", record)
    if not world.main:
        return {}
    if not config.policy.dynamic:
        recommender.fix_weights_at(split)
    save_run(out, config, model, recommender.policy, data)
    metrics = evaluate_ranker(recommender, config, split, static_weights=weights)
    metrics.update({"test_mae": mae, "stage1": stage1, "stage2_last": stage2[-1]})
    return metrics


def _train_item_policy(config: RunConfig, data: Interactions, split: Split, out: Path
                       ) -> dict[str, Any]:
    entry = ITEM_POLICIES[config.name]
    module, baseline_config = build_item_policy(config, data)
    fit_log = entry.fit(module, data, split, baseline_config, config.eval.k, config.seed)
    for record in fit_log[:: max(1, len(fit_log) // 10)]:
        log.info("fit %s", record)
    tunable = "weights" in {f.name for f in dataclasses.fields(baseline_config)}
    if tunable and split.valid.any() and "weights" not in config.baseline:
        weights = _tune_item_weights(config, data, split, module)
        log.info("static weights tuned on validation: %s", weights)
        config = dataclasses.replace(config, baseline={**config.baseline, "weights": weights})
        module = rebuild_item_policy(config, data, module.state_dict())
    save_item_run(out, config, module, data)
    ranker = ItemRanker(module, data, config.model.history_length)
    metrics = evaluate_ranker(ranker, config, split)
    metrics["fit_last"] = fit_log[-1] if fit_log else {}
    if "weights" in config.baseline:
        metrics["static_weights"] = config.baseline["weights"]
    return metrics


def _tune_item_weights(config: RunConfig, data: Interactions, split: Split,
                       module: torch.nn.Module) -> list[float]:
    """Optuna over the static weights of a multi-objective item-level baseline (paper
    §5.2), scored on validation events; no retraining: the weights are not learnt."""
    k = config.eval.k
    vs = validation_set(data, split, k=k, seed=config.seed)
    state = module.state_dict()
    own = ItemRanker(module, data, config.model.history_length)
    values = own.objective_scores(vs.events, vs.items)  # once, where only weights change

    def mean_reward(alpha: np.ndarray) -> float:
        if values is not None:
            return top_k_mean_reward(own.aggregated(values, alpha.tolist()), vs, k)
        trial = dataclasses.replace(config, baseline={**config.baseline,
                                                      "weights": alpha.tolist()})
        ranker = ItemRanker(rebuild_item_policy(trial, data, state), data,
                            config.model.history_length)
        return top_k_mean_reward(ranker.scores(vs.events, vs.items), vs, k)

    weights, _ = tune_weights(mean_reward, data.n_objectives,
                              trials=config.policy.static_trials, seed=config.seed)
    return [float(w) for w in weights]
