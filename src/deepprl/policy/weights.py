"""Weight policies: they act (state, context -> alpha on the simplex) and never learn.

Every policy maps state [B, S] and context [B, Fc] to weights alpha [B, K], alpha >= 0,
sum_k alpha_k = 1. Learning lives in deepprl.rl.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from deepprl.models.layers import mlp


class Standardise(nn.Module):
    """x -> (x - mean) / std per feature, the statistics held as buffers (saved with the
    policy, so a loaded run standardises as it was trained). Identity until fit."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Statistics of x [N, D] (e.g. every training event)."""
        if x.ndim != 2 or x.shape[1] != len(self.mean) or len(x) == 0:
            raise ValueError(f"standardisation needs [N > 0, {len(self.mean)}] inputs, got "
                             f"{list(x.shape)}")
        std = x.double().std(0, correction=0).float() if len(x) > 1 else torch.ones_like(
            self.std)
        self.set(x.double().mean(0).float(), std)

    @torch.no_grad()
    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Statistics computed elsewhere (e.g. pooled over ranks), [D] each; a constant
        feature (std ~ 0) keeps std 1 (only centred), so it cannot blow up a later event's
        value."""
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def hidden_stack(sizes: list[int]) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU per hidden layer, a plain Linear last: each hidden layer
    restores the scale of its output per event, so the state's variation across events
    reaches the output (3 sigmoid layers shrank it 200-fold at init; docs/model.md)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(b), nn.ReLU()]
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """mu(s, C) -> alpha: standardised inputs, `layers` hidden layers (Linear, LayerNorm,
    ReLU), a softmax output. The paper's sigmoid layers saturate (docs/model.md)."""

    def __init__(self, *, state_dim: int, context_dim: int, n_objectives: int,
                 hidden: int = 64, layers: int = 3, use_context: bool = True) -> None:
        super().__init__()
        self.use_context = use_context
        in_dim = state_dim + (context_dim if use_context else 0)
        self.inputs = Standardise(in_dim)
        self.net = hidden_stack([in_dim, *([hidden] * layers), n_objectives])
        self._register_load_state_dict_pre_hook(_refuse_unstandardised)

    def joined(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """[B, S (+ Fc)] the raw input: state, and context where used."""
        return torch.cat([state, context], dim=-1) if self.use_context else state

    def fit_inputs(self, state: torch.Tensor, context: torch.Tensor) -> None:
        """Standardise with the statistics of the training events' states [N, S] and
        contexts [N, Fc]."""
        self.inputs.fit(self.joined(state, context))

    def standardise(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.inputs(self.joined(state, context))  # [B, S (+ Fc)]

    def logits(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardise(state, context))  # [B, K]

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(state, context), dim=-1)  # [B, K] on the simplex

    def layer_outputs(self, state: torch.Tensor, context: torch.Tensor
                      ) -> list[torch.Tensor]:
        """The standardised input, each hidden layer's output and the logits, for
        diagnosis (how much of the state's variation each layer keeps)."""
        x = self.standardise(state, context)
        out = [x]
        for module in self.net:
            x = module(x)
            if isinstance(module, nn.ReLU):
                out.append(x)
        return [*out, x]


def _refuse_unstandardised(state_dict: dict[str, torch.Tensor], prefix: str,
                           *args: object) -> None:
    """An actor saved before inputs were standardised (sigmoid layers, no statistics)
    cannot act as it did with today's layers: say so instead of listing missing keys."""
    if prefix + "inputs.mean" not in state_dict and prefix + "net.0.weight" in state_dict:
        raise ValueError("this weight actor was saved by an older deepprl (sigmoid layers, "
                         "no input standardisation); retrain the run")


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
        self.register_buffer("grid", simplex_grid(n_objectives, steps))  # [G, K]
        self.inputs = Standardise(in_dim)  # set from the learning events (rl.bandit)
        self.net = mlp([in_dim, *([hidden] * layers), len(self.grid)], "relu")

    def joined(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The raw network input [B, S (+ Fc)], before standardisation."""
        return torch.cat([state, context], dim=-1) if self.use_context else state

    def scores(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted reward of each grid point relative to the event's grid mean [B, G]."""
        out: torch.Tensor = self.net(self.inputs(self.joined(state, context)))
        return out

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.grid[self.scores(state, context).argmax(-1)]  # [B, K]
