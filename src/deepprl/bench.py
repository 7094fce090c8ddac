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
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.sequences import history_index
from deepprl.data.splits import Split
from deepprl.distributed import SINGLE
from deepprl.models.network import PredictorModel
from deepprl.recommender import Recommender
from deepprl.train.run import seed_everything
from deepprl.train.stage1 import fit_predictor, make_optimizer, train_steps
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


def _setup(dataset: str, model: str, batch_size: int, seed: int
           ) -> tuple[RunConfig, Interactions, Split, PredictorModel, np.ndarray]:
    """The run config, data, split, untrained stage-1 model and training events of a bench."""
    config = RunConfig(dataset={"name": dataset}, seed=seed,
                       train=dataclasses.replace(TrainConfig(), batch_size=batch_size))
    if model not in BENCH_MODELS:
        config = configure(model, config)
    seed_everything(seed)
    data = load_dataset(config.dataset)
    split = run_split(data, config)
    return config, data, split, build_model(config, data), np.flatnonzero(split.train)


def bench_train(dataset: str, model: str, *, epochs: int = 3, batch_size: int = 256,
                seed: int = 0) -> dict[str, Any]:
    """records/s of training: stage 1 (one warm-up epoch, then `epochs` timed, median) for
    "predictor" and every weighted zoo model; the whole Algorithm 1 for "deepprl"."""
    if model not in bench_models():
        raise ValueError(f"unknown model {model!r} for bench; expected one of {bench_models()}")
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    config, data, split, net, train_events = _setup(dataset, model, batch_size, seed)
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


# the matrix products FlopCounterMode counts; everything else (elementwise, copies, the
# optimiser, Python) is what the ceiling below assumes could cost nothing
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmul_peak(shapes: tuple[tuple[int, int, int], ...] = (
        (256, 64, 256), (2560, 48, 256), (1024, 1024, 1024)), repeats: int = 50
                ) -> dict[str, Any]:
    """GFLOP/s of float32 [m, k] @ [k, n] at the current thread count, best of `shapes`
    (default: the Time-LSTM's recurrence and input projection at batch 256, and a large
    product that reaches the BLAS's peak)."""
    rates = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(5):
            a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n / statistics.median(times) / 1e9
    return {"gflops_by_shape": rates, "gflops_best": max(rates.values())}


def training_ceiling(dataset: str, *, batch_size: int = 256, batches: int = 20,
                     seed: int = 0) -> dict[str, Any]:
    """How fast DeepPRL's stage 1 could train here, measured from its matrix products.

    FlopCounterMode counts the FLOPs of one training step (forward and backward); the
    profiler splits the measured step time into matrix products and the rest. Two upper
    bounds follow: records/s if everything but the matrix products cost nothing, and
    records/s if, in addition, every product ran at this machine's best measured GFLOP/s."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    config, data, _, net, train_events = _setup(dataset, "predictor", batch_size, seed)
    history = history_index(data, net.config.history_length)
    optimizer = make_optimizer(net.parameters(), config.train)
    order = np.random.default_rng([seed, 3]).permutation(train_events)
    n = max(1, min(batches, len(order) // batch_size))

    def steps(first: int, count: int) -> None:
        chunk = order[first * batch_size:(first + count) * batch_size]
        train_steps(net, optimizer, data, history, chunk, count, batch_size, SINGLE, None, 0)

    net.train()
    steps(0, 1)  # warm-up
    with FlopCounterMode(display=False) as counter:
        steps(0, 1)
    flops_per_batch = counter.get_total_flops()
    start = time.perf_counter()
    steps(0, n)
    seconds_per_batch = (time.perf_counter() - start) / n
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        steps(0, n)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    peak = matmul_peak()
    share = matmul / total
    matmul_seconds_per_batch = seconds_per_batch * share
    peak_seconds_per_batch = flops_per_batch / (peak["gflops_best"] * 1e9)
    run_batches = config.train.epochs * len(train_events) / batch_size
    return {
        "dataset": dataset, "batch_size": batch_size, "batches": n,
        "flops_per_batch": flops_per_batch, "flops_per_record": flops_per_batch / batch_size,
        "records_per_s_measured": batch_size / seconds_per_batch,
        "matmul_share_of_step": share,
        "matmul_gflops_achieved": flops_per_batch / matmul_seconds_per_batch / 1e9,
        "records_per_s_if_only_matmuls": batch_size / matmul_seconds_per_batch,
        "matmul_peak": peak,
        "records_per_s_at_peak": batch_size / peak_seconds_per_batch,
        "run_epochs": config.train.epochs, "train_records": len(train_events),
        "stage1_seconds_if_only_matmuls": run_batches * matmul_seconds_per_batch,
        "stage1_seconds_at_peak": run_batches * peak_seconds_per_batch,
    }
