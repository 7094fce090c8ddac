"""Data-parallel training (torch.distributed, gloo on CPU): gradient averaging is exact, and
`torchrun --nproc_per_node=2 -m deepprl train` matches one process within seed noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.distributed import SINGLE, World, average_gradients, shard, user_shard
from deepprl.train.run import train_run

ROOT = Path(__file__).resolve().parents[1]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(7, 3, generator=g), torch.randn(7, 2, generator=g)


def _rank_grads(rank: int, size: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        model, (x, y) = _model(), _data()
        mine = shard(np.arange(len(x)), World(rank=rank, size=size))  # 4 and 3 events
        loss = (model(x[mine]) - y[mine]).abs().sum(-1).mean()
        loss.backward()
        total = average_gradients(model.parameters(), len(mine), World(rank=rank, size=size))
        torch.save({"total": total, "grads": [p.grad for p in model.parameters()]},
                   f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_averaged_gradients_equal_the_full_batch_gradient(tmp_path: Path) -> None:
    """Two ranks with unequal shards: after the all_reduce each holds the gradient of the
    mean loss over all 7 events, exactly as one process computes it."""
    model, (x, y) = _model(), _data()
    (model(x) - y).abs().sum(-1).mean().backward()
    expected = [p.grad for p in model.parameters()]
    out = str(tmp_path / "grads")
    mp.spawn(_rank_grads, args=(2, f"file://{tmp_path / 'rendezvous'}", out), nprocs=2)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}")
        assert got["total"] == 7
        for g, e in zip(got["grads"], expected, strict=True):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)


def test_shards_cover_every_event_once() -> None:
    events = np.arange(11)
    parts = [shard(events, World(rank=r, size=3)) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == events.tolist()
    users = np.array([1, 1, 2, 3, 3, 3, 4])
    masks = [user_shard(users, World(rank=r, size=2)) for r in range(2)]
    assert (masks[0] ^ masks[1]).all()  # each user's trajectory on exactly one rank
    assert average_gradients([], 5, SINGLE) == 5  # one process: nothing to reduce


SIM = {"name": "simulator", "n_users": 40}
EPOCHS, STEPS, K = 2, 100, 5


def _config(seed: int) -> RunConfig:
    return RunConfig(dataset=SIM, seed=seed, train=TrainConfig(epochs=EPOCHS),
                     policy=PolicyConfig(steps=STEPS), eval=EvalConfig(k=K))


def _summary(metrics: dict) -> np.ndarray:
    return np.array([*metrics["test_mae"].values(), metrics["learned"]["reward"]])


def test_torchrun_two_processes_match_one_process_within_seed_noise(tmp_path: Path) -> None:
    one = [_summary(train_run(_config(seed), tmp_path / f"single{seed}")) for seed in (0, 1)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", "-m", "deepprl", "train", "--dataset", "simulator",
           "--dataset-option", "n_users=40", "--epochs", str(EPOCHS), "--policy-steps",
           str(STEPS), "--k", str(K), "--quiet", "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert done.stdout.count("upper bound") == 1  # rank 0 alone prints the table
    ddp = _summary(metrics)
    noise = np.abs(one[0] - one[1])
    # MAE of both objectives and reward: within twice the seed-to-seed spread (or 0.01)
    assert (np.abs(ddp - one[0]) <= np.maximum(2 * noise, 0.01)).all(), (ddp, one)
