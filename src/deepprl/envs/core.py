"""Interactive users, vectorised: N independent lanes (one user each) step together.

Every environment of this package is a `Population` of lanes around a `Truth` (the hidden
ground truth of a world). The gymnasium environments are one lane; the long-term study runs
hundreds of lanes at once (users x static weights) with one model forward per iteration.

One step of a lane:
1. the recommender gives a score to every item; the lane recommends the top-k items the
   user has not consumed yet (ties go to the lower item index);
2. the user's response (after Sun et al. 2019's discrete-choice feedback loop): the user
   picks at most one of the k items, item i with probability proportional to
   exp(u_i / temperature), or none, with weight exp(outside / temperature), where u_i is the
   user's TRUE utility of i now (never shown to the recommender);
3. a picked item is consumed: appended to the user's history with the step's time, and
   never recommended to that user again;
4. the clock moves on by an exponential gap (mean `mean_gap_hours`).
The vector reward is the mean true objective vector of the k recommended items (the
paper's per-objective metric of a top-k list).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Truth(Protocol):
    """The hidden ground truth of a world (all objectives maximised, in [0, 1])."""

    n_users: int
    n_items: int
    n_objectives: int

    def values(self, users: np.ndarray, items: np.ndarray, times: np.ndarray,
               prev_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """users [N], items [N, C] (1..I), times [N] seconds, prev_items [N] (the user's
        latest consumed item, 0 = none) -> (objectives [N, C, K], utility [N, C])."""
        ...


@dataclass(frozen=True)
class ResponseConfig:
    """How users answer a recommendation list."""

    k: int = 10
    """Items recommended per step (top-k)."""
    temperature: float = 0.1
    """Softmax temperature of the choice among the k items (utility units)."""
    outside: float = 0.8
    """Utility of choosing nothing (the outside option)."""
    mean_gap_hours: float = 24.0
    """Mean of the exponential time between two steps of a user."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not self.temperature > 0 or not self.mean_gap_hours > 0:
            raise ValueError("temperature and mean_gap_hours must be positive")


@dataclass(frozen=True)
class StepResult:
    """What N lanes saw in one step (NumPy)."""

    recommended: np.ndarray  # [N, k] item indices, best first
    reward: np.ndarray  # [N, K] mean true objectives of the recommended items
    utility: np.ndarray  # [N] mean true utility of the recommended items
    chosen: np.ndarray  # [N] consumed item, 0 = none


class Population:
    """N lanes of users with growing histories; `step(scores)` moves all of them.

    users [N] user indices (1..U); history [N, h0] initial item indices (0 = none), oldest
    first, with their times hist_times [N, h0] (seconds); start [N] the time of the first
    step. Items in the initial history count as consumed, and so do the items of `seen`
    [N, I + 1] (a mask: what a user consumed before the history window, e.g. a whole logged
    past). `capacity` bounds the steps."""

    def __init__(self, truth: Truth, response: ResponseConfig, *, users: np.ndarray,
                 history: np.ndarray, hist_times: np.ndarray, start: np.ndarray,
                 capacity: int, seed: int | np.random.SeedSequence,
                 seen: np.ndarray | None = None) -> None:
        n, h0 = history.shape
        if len(users) != n or hist_times.shape != history.shape or len(start) != n:
            raise ValueError("users, history, hist_times and start must describe the same "
                             "lanes")
        if truth.n_items - h0 - capacity < response.k:
            raise ValueError(f"{truth.n_items} items cannot feed {capacity} steps of top-"
                             f"{response.k} after {h0} consumed items")
        self.truth, self.response = truth, response
        self.rng = np.random.default_rng(seed)
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.zeros((n, h0 + capacity), dtype=np.int64)  # [N, H], 0 = empty
        self.times = np.zeros((n, h0 + capacity), dtype=np.float64)  # [N, H]
        self.items[:, :h0], self.times[:, :h0] = history, hist_times
        self.length = (history > 0).sum(1)  # [N] steps in use, left-aligned below
        for lane in range(n):  # drop gaps in a hand-made history: steps stay contiguous
            keep = history[lane] > 0
            self.items[lane, :h0] = 0
            self.items[lane, : keep.sum()] = history[lane, keep]
            self.times[lane, : keep.sum()] = hist_times[lane, keep]
        self.now = np.asarray(start, dtype=np.float64).copy()  # [N]
        self.consumed = np.zeros((n, truth.n_items + 1), dtype=bool)  # [N, I + 1]
        np.put_along_axis(self.consumed, self.items, True, axis=1)
        if seen is not None:
            if seen.shape != self.consumed.shape:
                raise ValueError(f"seen must be {list(self.consumed.shape)}, got "
                                 f"{list(seen.shape)}")
            self.consumed |= seen
        self.consumed[:, 0] = True  # the padding item is never recommended

    @property
    def n_lanes(self) -> int:
        return len(self.users)

    def last_item(self) -> np.ndarray:
        """[N] each lane's latest history item (0 = empty history)."""
        idx = np.maximum(self.length - 1, 0)
        return np.where(self.length > 0, self.items[np.arange(self.n_lanes), idx], 0)

    def recent(self, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last `length` history steps, oldest first, right-aligned:
        (items [N, L] 0-padded, times [N, L], prev_time [N] = time of the step before the
        window, NaN when none)."""
        n = self.n_lanes
        offsets = self.length[:, None] - length + np.arange(length)[None, :]  # [N, L]
        valid = offsets >= 0
        safe = np.maximum(offsets, 0)
        rows = np.arange(n)[:, None]
        items = np.where(valid, self.items[rows, safe], 0)
        times = np.where(valid, self.times[rows, safe], 0.0)
        before = self.length - length - 1
        prev = np.where(before >= 0, self.times[np.arange(n), np.maximum(before, 0)], np.nan)
        return items, times, prev

    def true_values(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True (objectives [N, C, K], utility [N, C]) of items [N, C] for each lane now."""
        return self.truth.values(self.users, items, self.now, self.last_item())

    def rank(self, scores: np.ndarray) -> np.ndarray:
        """[N, k] the top-k unconsumed items by scores [N, I] (column j = item j + 1)."""
        n, width = scores.shape
        if n != self.n_lanes or width != self.truth.n_items:
            raise ValueError(f"scores must be [{self.n_lanes}, {self.truth.n_items}], got "
                             f"{list(scores.shape)}")
        masked = np.where(self.consumed[:, 1:], -np.inf, np.nan_to_num(
            np.asarray(scores, dtype=np.float64), nan=-1e300, posinf=1e300, neginf=-1e300))
        top = np.argsort(-masked, axis=1, kind="stable")[:, : self.response.k]
        return top + 1

    def step(self, scores: np.ndarray) -> StepResult:
        """Recommend the top-k by scores [N, I], let every user respond, advance the clock."""
        recommended = self.rank(scores)  # [N, k]
        objectives, utility = self.true_values(recommended)  # [N, k, K], [N, k]
        chosen = self._choose(recommended, utility)
        picked = np.flatnonzero(chosen > 0)
        self.items[picked, self.length[picked]] = chosen[picked]
        self.times[picked, self.length[picked]] = self.now[picked]
        self.length[picked] += 1
        self.consumed[picked, chosen[picked]] = True
        gap = self.rng.exponential(self.response.mean_gap_hours * 3600.0, size=self.n_lanes)
        self.now = self.now + gap
        return StepResult(recommended=recommended, reward=objectives.mean(1),
                          utility=utility.mean(1), chosen=chosen)

    def _choose(self, recommended: np.ndarray, utility: np.ndarray) -> np.ndarray:
        """[N] the item each user consumes (0 = none), by a multinomial logit."""
        t = self.response.temperature
        logits = np.concatenate([np.full((len(utility), 1), self.response.outside), utility],
                                axis=1) / t  # [N, k + 1]; column 0 = nothing
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        u = self.rng.random(len(p))[:, None]
        pick = np.minimum((p.cumsum(1) < u).sum(1), p.shape[1] - 1)  # [N] in 0..k
        return np.where(pick > 0, recommended[np.arange(len(p)), np.maximum(pick - 1, 0)], 0)
