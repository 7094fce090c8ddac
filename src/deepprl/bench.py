"""Training-throughput benchmark: one warm-up epoch, then timed epochs (median reported)."""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import build_model, run_split
from deepprl.config import RunConfig, TrainConfig
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.sequences import history_index
from deepprl.data.splits import Split
from deepprl.distributed import SINGLE
from deepprl.models.network import PredictorModel
from deepprl.train.run import seed_everything
from deepprl.train.stage1 import fit_predictor, make_optimizer, train_steps
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


def _setup(dataset: str, model: str, batch_size: int, seed: int,
           options: dict[str, Any] | None = None
           ) -> tuple[RunConfig, Interactions, Split, PredictorModel, np.ndarray]:
    """The run config, data, split, untrained stage-1 model and training events of a bench
    (`options`: the dataset loader's, e.g. n_users for the simulator)."""
    config = RunConfig(dataset={"name": dataset, **(options or {})}, seed=seed,
                       train=dataclasses.replace(TrainConfig(), batch_size=batch_size))
    if model not in BENCH_MODELS:
        config = configure(model, config)
    seed_everything(seed)
    data = load_dataset(config.dataset)
    split = run_split(data, config)
    return config, data, split, build_model(config, data), np.flatnonzero(split.train)


def bench_train(dataset: str, model: str, *, epochs: int | None = None, batch_size: int = 256,
                seed: int = 0, policy_steps: int | None = None,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """records/s of training: stage 1 (one warm-up epoch, then `epochs` timed, default 3,
    median) for "predictor" and every weighted zoo model; for "deepprl" a whole run
    (bench_run: `epochs` and `policy_steps` default to the config's)."""
    if model not in bench_models():
        raise ValueError(f"unknown model {model!r} for bench; expected one of {bench_models()}")
    if epochs is not None and epochs < 1:
        raise ValueError("epochs must be >= 1")
    if policy_steps is not None and policy_steps < 1:
        raise ValueError("policy_steps must be >= 1")
    config, data, _, net, train_events = _setup(dataset, model, batch_size, seed, options)
    if model == "deepprl":
        out = bench_run(config, net, data, train_events, epochs=epochs,
                        policy_steps=policy_steps)
    else:
        out = _bench_stage1(config, net, data, train_events, 3 if epochs is None else epochs)
    out = {"model": model, "dataset": dataset, **out}
    out["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                      "python": platform.python_version(), "torch": torch.__version__}
    return out


def _bench_stage1(config: RunConfig, net: PredictorModel, data: Interactions,
                  train_events: np.ndarray, epochs: int) -> dict[str, Any]:
    """Stage 1 alone: one warm-up epoch, then `epochs` timed (median)."""
    warm = dataclasses.replace(config.train, epochs=1)
    fit_predictor(net, data, train_events, warm, seed=config.seed)
    timed = dataclasses.replace(config.train, epochs=epochs)
    records = fit_predictor(net, data, train_events, timed, seed=config.seed + 1)
    median = statistics.median(r["seconds"] for r in records)
    return {"records": len(train_events), "batch_size": config.train.batch_size,
            "timed_epochs": epochs, "epoch_seconds_median": median,
            "records_per_s": len(train_events) / median}


def bench_run(config: RunConfig, net: PredictorModel, data: Interactions,
              train_events: np.ndarray, *, epochs: int | None = None,
              policy_steps: int | None = None) -> dict[str, Any]:
    """A whole run of `config` (deepprl.train.run.train_run into a temporary directory:
    stage 1, stage 2 with the configured learner, checks, saving, evaluation), timed, beside
    its floor measured in this process: the FLOPs of its stage-1 matrix products at this
    machine's best matmul rate (`net`, untrained, is only counted). records_per_s: the
    training records the run's stage 1 reads, per second of stage 1 + stage 2."""
    import tempfile
    from pathlib import Path

    from deepprl.train.run import train_run

    if epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                       epochs=epochs))
    if policy_steps is not None:
        config = dataclasses.replace(config, policy=dataclasses.replace(config.policy,
                                                                        steps=policy_steps))
    floor = stage1_floor(config, net, data, train_events)
    with tempfile.TemporaryDirectory(prefix="deepprl-bench-run-") as tmp:
        metrics = train_run(config, Path(tmp) / "run")
    stage1 = metrics["timing"]["stage1"]["seconds"]
    stage2 = metrics["timing"]["stage2"]["seconds"]
    run = metrics["seconds"]
    read = len(train_events) * config.train.epochs
    return {
        "records": len(train_events), "batch_size": config.train.batch_size,
        "run_epochs": config.train.epochs, "policy_algorithm": config.policy.algorithm,
        "policy_steps": config.policy.steps,
        "epoch_seconds_median": statistics.median(r["seconds"] for r in metrics["stage1"]),
        "records_per_s": read / (stage1 + stage2),
        "run_seconds": run, "stage1_seconds": stage1, "stage2_seconds": stage2,
        "floor_seconds": floor["seconds"], "run_over_floor": run / floor["seconds"],
        "stage2_share_of_run": stage2 / run, "floor": floor,
    }


def stage1_floor(config: RunConfig, net: PredictorModel, data: Interactions,
                 train_events: np.ndarray) -> dict[str, Any]:
    """Seconds of a run's stage-1 matrix products (config.train.epochs over `train_events`)
    if every one ran at this machine's best measured matmul rate (matmul_peak): FLOPs of
    one training step counted by FlopCounterMode on a copy of `net`."""
    batch_size = config.train.batch_size
    flops = _flops_per_batch(copy.deepcopy(net), config, data, train_events)
    peak = matmul_peak()
    batches = config.train.epochs * len(train_events) / batch_size
    return {"flops_per_batch": flops, "gflops_best": peak["gflops_best"],
            "batches": batches, "seconds": batches * flops / (peak["gflops_best"] * 1e9)}


def _flops_per_batch(net: PredictorModel, config: RunConfig, data: Interactions,
                     train_events: np.ndarray) -> int:
    """FLOPs of matrix products in one stage-1 step (forward, backward) of a full batch."""
    from torch.utils.flop_counter import FlopCounterMode

    batch_size = config.train.batch_size
    history = history_index(data, net.config.history_length)
    optimizer = make_optimizer(net.parameters(), config.train)
    chunk = np.random.default_rng([config.seed, 3]).permutation(train_events)[:batch_size]
    net.train()
    with FlopCounterMode(display=False) as counter:
        train_steps(net, optimizer, data, history, chunk, 1, batch_size, SINGLE, None, 0)
    return int(counter.get_total_flops())


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

    config, data, _, net, train_events = _setup(dataset, "predictor", batch_size, seed)
    flops_per_batch = _flops_per_batch(net, config, data, train_events)
    history = history_index(data, net.config.history_length)
    optimizer = make_optimizer(net.parameters(), config.train)
    order = np.random.default_rng([seed, 3]).permutation(train_events)
    n = max(1, min(batches, len(order) // batch_size))

    def steps(first: int, count: int) -> None:
        chunk = order[first * batch_size:(first + count) * batch_size]
        train_steps(net, optimizer, data, history, chunk, count, batch_size, SINGLE, None, 0)

    net.train()
    steps(0, 1)  # warm-up
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
