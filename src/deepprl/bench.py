"""Training-throughput benchmark: one warm-up epoch, then timed epochs (median reported)."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import build_actor, build_model, run_split
from deepprl.config import RunConfig, TrainConfig
from deepprl.data.registry import load_dataset
from deepprl.recommender import Recommender
from deepprl.train.run import seed_everything
from deepprl.train.stage1 import fit_predictor
from deepprl.train.stage2 import build_trajectories, learn_ddpg
from deepprl.zoo import configure, models

BENCH_MODELS = {
    "predictor": "stage 1 only: embedding + SA-Time-LSTM + Mixture of HyperNetwork",
    "deepprl": "Algorithm 1: stage 1 epochs plus the stage-2 actor-critic, records/s overall",
}


def bench_models() -> list[str]:
    """Every model bench_train accepts: the two above plus each weighted model of the zoo
    (its stage-1 predictor is timed)."""
    return [*BENCH_MODELS, *(n for n, e in models().items()
                             if e.item_policy is None and n not in BENCH_MODELS)]


def bench_train(dataset: str, model: str, *, epochs: int = 3, batch_size: int = 256,
                seed: int = 0) -> dict[str, Any]:
    """records/s of training: stage 1 (one warm-up epoch, then `epochs` timed, median) for
    "predictor" and every weighted zoo model; the whole Algorithm 1 for "deepprl"."""
    if model not in bench_models():
        raise ValueError(f"unknown model {model!r} for bench; expected one of {bench_models()}")
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    config = RunConfig(dataset={"name": dataset}, seed=seed,
                       train=dataclasses.replace(TrainConfig(), batch_size=batch_size))
    if model not in BENCH_MODELS:
        config = configure(model, config)
    seed_everything(seed)
    data = load_dataset(config.dataset)
    split = run_split(data, config)
    net = build_model(config, data)
    train_events = np.flatnonzero(split.train)
    warm = dataclasses.replace(config.train, epochs=1)
    fit_predictor(net, data, train_events, warm, seed=seed)
    timed = dataclasses.replace(config.train, epochs=epochs)
    records = fit_predictor(net, data, train_events, timed, seed=seed + 1)
    epoch_seconds = [r["seconds"] for r in records]
    out: dict[str, Any] = {
        "model": model, "dataset": dataset, "records": len(train_events),
        "batch_size": batch_size, "timed_epochs": epochs,
        "epoch_seconds_median": statistics.median(epoch_seconds),
        "records_per_s": len(train_events) / statistics.median(epoch_seconds),
    }
    if model == "deepprl":
        for p in net.parameters():
            p.requires_grad_(False)
        actor = build_actor(config, net, data)
        start = time.perf_counter()
        env = build_trajectories(Recommender(net, actor, data), data, split.train | split.valid,
                                 config.policy, k=config.eval.k,
                                 max_candidates=config.train.max_candidates, seed=seed)
        learn_ddpg(actor, env, config.policy, k=config.eval.k, seed=seed)
        stage2 = time.perf_counter() - start
        stage1 = statistics.median(epoch_seconds) * config.train.epochs
        out.update({
            "stage1_seconds_per_run": stage1, "stage2_seconds": stage2,
            # a full run reads the training records `epochs` times in stage 1
            "records_per_s": len(train_events) * config.train.epochs / (stage1 + stage2),
            "run_epochs": config.train.epochs, "policy_steps": config.policy.steps,
        })
    out["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                      "python": platform.python_version(), "torch": torch.__version__}
    return out
