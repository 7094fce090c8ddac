"""Data-parallel training with PyTorch's own engine (torch.distributed, started by torchrun).

    torchrun --nproc_per_node=2 -m deepprl train --dataset movielens-100k --out runs/ddp

Under torchrun (WORLD_SIZE > 1) every rank trains on its own shard of the training events
(stage 1) or of the users' trajectories (stage 2); after each backward pass the gradients
are averaged over ranks (one all_reduce of a flat buffer, weighted by each rank's events),
so every rank takes the same optimizer step and the replicas stay identical. Rank 0 alone
writes the run directory. Outside torchrun nothing here touches torch.distributed, and
training is exactly the single-process code path. Backend: nccl on GPU, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """True on the one process that writes metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def env_world() -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE), or a single one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={size}")
    return World(rank=rank, size=size)


@contextmanager
def process_group() -> Iterator[World]:
    """Join the process group when launched by torchrun with more than one process (and
    leave it afterwards); otherwise yield the single-process world and do nothing."""
    world = env_world()
    if not world.distributed or dist.is_initialized():
        yield world
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def shard(indices: np.ndarray, world: World) -> np.ndarray:
    """This rank's share of `indices`: every size-th one, from position rank."""
    return indices[world.rank :: world.size]


def user_shard(users: np.ndarray, world: World) -> np.ndarray:
    """bool mask [N]: events whose user belongs to this rank (whole trajectories)."""
    return (users % world.size) == world.rank


def broadcast_module(module: nn.Module, world: World) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical replicas)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[torch.Tensor], count: int, world: World) -> int:
    """Replace each rank's mean gradient over its `count` events by the mean over all ranks'
    events (one all_reduce); returns the total count. A rank with no events sends zeros."""
    params = [p for p in params if p.requires_grad]
    if not world.distributed:
        return count
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) * float(count) for g in grads] +
                     [torch.tensor([float(count)], dtype=grads[0].dtype)])
    dist.all_reduce(flat)
    total = float(flat[-1])
    flat = flat[:-1] / max(total, 1.0)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
    return int(total)


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sum of `values` over ranks (for logs: losses times counts, counts)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
