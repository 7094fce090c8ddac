"""Weight policies: they act (state, context -> alpha on the simplex) and never learn.

Every policy maps state [B, S] and context [B, Fc] to weights alpha [B, K], alpha >= 0,
sum_k alpha_k = 1. Learning lives in deepprl.rl.
"""

from __future__ import annotations

import torch
from torch import nn

from deepprl.models.layers import mlp


class Actor(nn.Module):
    """mu(s, C) -> alpha: fully connected (paper: 3 hidden layers, sigmoid), softmax output."""

    def __init__(self, *, state_dim: int, context_dim: int, n_objectives: int,
                 hidden: int = 64, layers: int = 3, use_context: bool = True) -> None:
        super().__init__()
        self.use_context = use_context
        in_dim = state_dim + (context_dim if use_context else 0)
        self.net = mlp([in_dim, *([hidden] * layers), n_objectives], "sigmoid")

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, context], dim=-1) if self.use_context else state
        return torch.softmax(self.net(x), dim=-1)  # [B, K] on the simplex


class FixedWeights(nn.Module):
    """The same static alpha for every user and context (the static-weight baselines)."""

    def __init__(self, weights: torch.Tensor | list[float]) -> None:
        super().__init__()
        w = torch.as_tensor(weights, dtype=torch.float32)
        if w.ndim != 1 or (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"fixed weights must be non-negative and not all zero, got "
                             f"{w.tolist()}")
        self.weights: torch.Tensor
        self.register_buffer("weights", w / w.sum())

    @classmethod
    def equal(cls, n_objectives: int) -> FixedWeights:
        return cls(torch.full((n_objectives,), 1.0 / n_objectives))

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.weights.expand(state.shape[0], -1)
