"""Small building blocks shared by models, policies and critics."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes: list[int], activation: str = "relu", *, final_activation: bool = False
        ) -> nn.Sequential:
    """Fully connected layers sizes[0] -> ... -> sizes[-1] with `activation` between them."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def similarity_scores(query: torch.Tensor, key: torch.Tensor, kind: str) -> torch.Tensor:
    """Attention scores [..., Q, D] x [..., S, D] -> [..., Q, S], larger = more similar.

    neg_sq_dist: -||q - k||^2 / sqrt(D) (the paper's distance, turned into a similarity so
    that the softmax favours the closest steps); dot: q . k / sqrt(D)."""
    scale = query.shape[-1] ** 0.5
    if kind == "dot":
        return query @ key.transpose(-1, -2) / scale
    if kind == "neg_sq_dist":
        return -torch.cdist(query, key).pow(2) / scale
    raise ValueError(f"unknown attention similarity {kind!r}; expected 'neg_sq_dist' or 'dot'")


def softmax_last(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, by hand: on CPU, torch.softmax over rows of a few entries
    (the K x K mixture attention) was 4-10x slower than these three element-wise ops. The
    shift by the row maximum is a constant for the gradient (softmax is shift-invariant)."""
    e = (x - x.amax(-1, keepdim=True).detach()).exp()
    return e / e.sum(-1, keepdim=True)


T = TypeVar("T")


class InferenceCache(Generic[T]):
    """A value derived from parameters (generated weights, an embedding table), computed
    once and reused while no gradient is recorded and its source tensors are unchanged: an
    optimiser step or a loaded state bumps a tensor's version, a new tensor has a new
    address. With gradients on (training) it is recomputed every time."""

    def __init__(self) -> None:
        self._key: tuple[tuple[int, int], ...] | None = None
        self._value: T | None = None

    def get(self, sources: Iterable[torch.Tensor], compute: Callable[[], T]) -> T:
        if torch.is_grad_enabled():
            return compute()
        key = tuple((t.data_ptr(), t._version) for t in sources)
        if self._value is None or key != self._key:
            self._value, self._key = compute(), key
        return self._value
