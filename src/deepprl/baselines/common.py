"""Shared plumbing of the item-level baselines.

- LoggedEnv: the training period's logged trajectories as an environment, as in DeepPRL's
  stage 2: a state is a training event, an action is an item of the user's candidate set
  (the user's training-period items, or every item where the matrix is fully observed),
  its outcome is that item's true value at the event (Interactions.candidate_values), and
  the next state is the user's next training event whatever the action.
- Replay: a fixed-capacity transition store with a pluggable eviction rule.
- greedy_target: the (double-)DQN target over a next candidate set.
- ItemEmbedding, MaskedGRU: small neural pieces; reinitialise: seeded parameter init.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.baselines import training_events
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch, candidate_items, history_index, make_batch
from deepprl.data.splits import Split


@dataclass(frozen=True)
class LoggedSteps:
    """Training events as steps of their users' trajectories (arrays aligned on E)."""

    rows: np.ndarray  # [E] event indices of the training period, (user, time) order
    next_row: np.ndarray  # [E] the user's next training event; the event itself when done
    done: np.ndarray  # [E] bool: the user has no later training event
    gap_hours: np.ndarray  # [E] hours until the next training event; inf when done


def logged_steps(data: Interactions, split: Split) -> LoggedSteps:
    """The training events in (user, time) order with their next step."""
    rows = training_events(split)
    same = np.r_[data.user[rows[1:]] == data.user[rows[:-1]], False]
    nxt = np.where(same, np.r_[rows[1:], 0], rows)
    gap = np.where(same, (data.time[nxt] - data.time[rows]) / 3600.0, np.inf)
    return LoggedSteps(rows=rows, next_row=nxt, done=~same, gap_hours=gap)


def user_candidates(data: Interactions, split: Split, *, max_candidates: int, seed: int
                    ) -> np.ndarray:
    """[U + 1, C] each user's candidate items (0-padded): the user's distinct training-period
    items (at most max_candidates, a seeded subsample; 0 = no cap), or every item where the
    matrix is fully observed. Row 0 and users without training events are all padding."""
    rows = training_events(split)
    users = np.unique(data.user[rows])
    first = rows[np.searchsorted(data.user[rows], users)]  # one training event per user
    items = candidate_items(data, first, split.train, max_candidates=max_candidates or None,
                            seed=seed)
    table = np.zeros((data.n_users + 1, max(items.shape[1], 1)), dtype=np.int64)
    table[users, : items.shape[1]] = items
    return table


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """The batch with every tensor on `device` (no copy when already there)."""
    return Batch(**{f.name: getattr(batch, f.name).to(device)
                    for f in dataclasses.fields(batch)})


class LoggedEnv:
    """Logged training trajectories as an environment (see the module docstring)."""

    def __init__(self, data: Interactions, split: Split, *, history_length: int,
                 max_candidates: int, seed: int) -> None:
        self.data = data
        self.hist = history_index(data, history_length)  # [N, L]
        self.steps = logged_steps(data, split)
        self.table = user_candidates(data, split, max_candidates=max_candidates, seed=seed)
        if len(self.steps.rows) == 0:
            raise ValueError("the split has no training events: nothing to learn from")

    def __len__(self) -> int:
        return len(self.steps.rows)

    def batch(self, events: np.ndarray) -> Batch:
        """Model inputs of `events` [B]."""
        return make_batch(self.data, self.hist[events], events)

    def candidates(self, events: np.ndarray) -> np.ndarray:
        """[B, C] the candidate items of each event's user (0 = padding)."""
        return self.table[self.data.user[events]]

    def outcome(self, events: np.ndarray, items: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """True objectives [B, K] and reward [B] of one item [B] per event (NaN: unknown)."""
        objectives, reward = self.data.candidate_values(events, items[:, None])
        return objectives[:, 0], reward[:, 0]


def choose(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Column [B] of the best valid candidate per row (scores, valid [B, C])."""
    return scores.masked_fill(~valid, float("-inf")).argmax(dim=1)


def greedy_target(reward: torch.Tensor, done: torch.Tensor, gamma: float,
                  select: torch.Tensor, evaluate: torch.Tensor, valid: torch.Tensor
                  ) -> torch.Tensor:
    """Double-DQN target y = r + gamma * (1 - done) * evaluate[a*], a* = argmax_valid select.

    reward [B] (or [B, K] for vector rewards); done [B] float; select [B, C] the (scalarised)
    online-network values that pick a*; evaluate [B, C] (or [B, C, K]) the target network's
    values of the next candidates; valid [B, C] bool. A next state without a valid candidate
    bootstraps nothing."""
    a = choose(select, valid)  # [B]
    rows = torch.arange(select.shape[0], device=select.device)
    future = evaluate[rows, a] * valid.any(dim=1).to(evaluate.dtype).view(
        -1, *([1] * (evaluate.dim() - 2)))
    keep = (1.0 - done).view(-1, *([1] * (reward.dim() - 1)))
    return reward + gamma * keep * future


# -- replay ---------------------------------------------------------------------------------

# keep(reward [M, K], n) -> indices of the n transitions to keep (oldest come first in M)
Eviction = Callable[[torch.Tensor, int], torch.Tensor]


def fifo(reward: torch.Tensor, n: int) -> torch.Tensor:
    """Keep the newest n transitions."""
    return torch.arange(reward.shape[0] - n, reward.shape[0])


class Replay:
    """Transitions (event, item, reward vector, next event, done) in tensors; when over
    capacity, `evict` says which to keep."""

    FIELDS = ("row", "item", "reward", "next_row", "done")

    def __init__(self, capacity: int, reward_dim: int, *, evict: Eviction = fifo) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.evict = capacity, evict
        self.store: dict[str, torch.Tensor] = {
            "row": torch.zeros(0, dtype=torch.int64), "item": torch.zeros(0, dtype=torch.int64),
            "reward": torch.zeros(0, reward_dim), "next_row": torch.zeros(0, dtype=torch.int64),
            "done": torch.zeros(0)}

    def __len__(self) -> int:
        return int(self.store["row"].shape[0])

    def add(self, **new: torch.Tensor) -> None:
        """Append transitions (keyword per field, aligned on the first axis)."""
        if set(new) != set(self.FIELDS):
            raise ValueError(f"Replay.add needs exactly {self.FIELDS}")
        self.store = {k: torch.cat([self.store[k], new[k].to(self.store[k].dtype)])
                      for k in self.FIELDS}
        if len(self) > self.capacity:
            keep = self.evict(self.store["reward"], self.capacity)
            self.store = {k: v[keep] for k, v in self.store.items()}

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """n transitions drawn uniformly with replacement."""
        idx = torch.randint(len(self), (n,), generator=generator)
        return {k: v[idx] for k, v in self.store.items()}


# -- neural pieces --------------------------------------------------------------------------

class ItemEmbedding(nn.Module):
    """Item id embedding + projected item features: items [...] -> [..., dim]; padding (0)
    maps to zeros."""

    def __init__(self, *, item_features: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.feature_table: torch.Tensor
        self.register_buffer("feature_table", item_features.float())  # [I + 1, Fi]
        self.id = nn.Embedding(item_features.shape[0], dim, padding_idx=0)
        self.proj = nn.Linear(item_features.shape[1], dim) if item_features.shape[1] else None
        self.dim = dim

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        emb = self.id(items)
        if self.proj is not None:
            emb = emb + self.proj(self.feature_table[items])
        return emb * (items > 0).unsqueeze(-1)


class SideFeatures(nn.Module):
    """User-feature and event-context projections: (user [B], context [B, Fc]) -> [B, 2 dim]
    (zeros for a part the data lacks)."""

    def __init__(self, *, user_features: torch.Tensor, context_features: int, dim: int
                 ) -> None:
        super().__init__()
        self.user_table: torch.Tensor
        self.register_buffer("user_table", user_features.float())  # [U + 1, Fu]
        self.user = nn.Linear(user_features.shape[1], dim) if user_features.shape[1] else None
        self.context = nn.Linear(context_features, dim) if context_features else None
        self.dim = dim
        self.out_dim = 2 * dim

    def forward(self, users: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        zeros = context.new_zeros(users.shape[0], self.dim)
        u = self.user(self.user_table[users]) if self.user is not None else zeros
        c = self.context(context) if self.context is not None else zeros
        return torch.cat([u, c], dim=-1)


class MaskedGRU(nn.Module):
    """A GRU over left-padded steps: x [B, L, D], mask [B, L] -> last state [B, H]; masked
    steps leave the state untouched (a history of padding only gives zeros)."""

    def __init__(self, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(input_dim, hidden)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        for k in range(x.shape[1]):  # L steps (L = 10 by default)
            h = torch.where(mask[:, k : k + 1], self.cell(x[:, k], h), h)
        return h


def history_steps(items: ItemEmbedding, batch: Batch) -> torch.Tensor:
    """GRU inputs of the history: [item embedding; log gap] -> [B, L, Di + 1]."""
    return torch.cat([items(batch.hist_items), batch.hist_gaps.unsqueeze(-1)], dim=-1)


def reinitialise(module: nn.Module, seed: int) -> None:
    """Reset every submodule's parameters from `seed` (the global RNG is left as it was),
    so that a fit depends on its seed only, not on how the module was built."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU when it has none)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def dirichlet(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """n draws of Dirichlet(1, ..., 1): uniform on the simplex [n, k]."""
    g = torch.empty(n, k).exponential_(generator=generator)
    return g / g.sum(dim=1, keepdim=True)


def static_weights(weights: tuple[float, ...], n_objectives: int) -> torch.Tensor:
    """Config weights -> a simplex vector [K]; () means equal weights."""
    if not weights:
        return torch.full((n_objectives,), 1.0 / n_objectives)
    w = torch.tensor(weights, dtype=torch.float32)
    if len(weights) != n_objectives or (w < 0).any() or not torch.isfinite(w).all() \
            or w.sum() <= 0:
        raise ValueError(f"weights must be {n_objectives} non-negative numbers, not all zero; "
                         f"got {weights}")
    return w / w.sum()


def check_positive(**values: float) -> None:
    """Raise a ValueError naming the first config value that is not > 0."""
    for name, v in values.items():
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")


def check_unit(**values: float) -> None:
    """Raise a ValueError naming the first config value outside [0, 1]."""
    for name, v in values.items():
        if not 0 <= v <= 1:
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
