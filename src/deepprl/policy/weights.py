"""Weight policies: they act (state, context -> alpha on the simplex) and never learn.

Every policy maps state [B, S] and context [B, Fc] to weights alpha [B, K], alpha >= 0,
sum_k alpha_k = 1. Learning lives in deepprl.rl.
"""

from __future__ import annotations

import itertools

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


def simplex_grid(n_objectives: int, steps: int) -> torch.Tensor:
    """Every alpha on the simplex with coordinates in {0, 1/steps, ..., 1}: [G, K]."""
    if n_objectives < 1 or steps < 1:
        raise ValueError("simplex_grid needs n_objectives >= 1 and steps >= 1")
    points = [c for c in itertools.product(range(steps + 1), repeat=n_objectives - 1)
              if sum(c) <= steps]
    grid = torch.tensor([[*c, steps - sum(c)] for c in points], dtype=torch.float32)
    return grid / steps


class GridQPolicy(nn.Module):
    """DQN weights (ablation variant 6): Q(s, C) over a discretised simplex; acts greedily.

    The Q-network is split like the DDPG critic: R(s, C) [G] for the immediate reward of
    each grid point plus F(s, C) for what follows (see deepprl.rl.ddpg.Critic)."""

    def __init__(self, *, state_dim: int, context_dim: int, n_objectives: int,
                 hidden: int = 64, layers: int = 3, steps: int = 10,
                 use_context: bool = True) -> None:
        super().__init__()
        self.use_context = use_context
        self.grid: torch.Tensor
        self.register_buffer("grid", simplex_grid(n_objectives, steps))  # [G, K]
        in_dim = state_dim + (context_dim if use_context else 0)
        self.immediate = mlp([in_dim, *([hidden] * layers), len(self.grid)], "relu")
        self.future = mlp([in_dim, *([hidden] * layers), 1], "relu")

    def q_values(self, state: torch.Tensor, context: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R [B, G], F [B]); Q = R + F[:, None]."""
        x = torch.cat([state, context], dim=-1) if self.use_context else state
        return self.immediate(x), self.future(x).squeeze(-1)

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        now, _ = self.q_values(state, context)
        return self.grid[now.argmax(-1)]  # [B, K]


class GridBandit(nn.Module):
    """Full-information contextual bandit weights (the default on logged data): a ReLU MLP
    predicts the reward of every alpha of simplex_grid(K, steps) (vertices included) from
    the standardised state and context; acts with the grid point predicted best, so alpha
    lands exactly on a vertex where that is best. Learning: deepprl.rl.bandit."""

    def __init__(self, *, state_dim: int, context_dim: int, n_objectives: int,
                 hidden: int = 64, layers: int = 3, steps: int = 10,
                 use_context: bool = True) -> None:
        super().__init__()
        self.use_context = use_context
        in_dim = state_dim + (context_dim if use_context else 0)
        self.grid: torch.Tensor
        self.mean: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("grid", simplex_grid(n_objectives, steps))  # [G, K]
        # input standardisation, set from the learning events (set_standardisation)
        self.register_buffer("mean", torch.zeros(in_dim))  # [S (+ Fc)]
        self.register_buffer("scale", torch.ones(in_dim))  # [S (+ Fc)]
        self.net = mlp([in_dim, *([hidden] * layers), len(self.grid)], "relu")

    def inputs(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The raw network input [B, S (+ Fc)], before standardisation."""
        return torch.cat([state, context], dim=-1) if self.use_context else state

    @torch.no_grad()
    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Inputs are fed as (x - mean) / std; constant inputs (std ~ 0) are only centred."""
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def scores(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted reward of each grid point relative to the event's grid mean [B, G]."""
        x = (self.inputs(state, context) - self.mean) / self.scale
        out: torch.Tensor = self.net(x)
        return out

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.grid[self.scores(state, context).argmax(-1)]  # [B, K]
