"""Per-event model inputs: the user's last L events, their gaps and contexts; candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepprl.data.inputs import StepArrays, step_arrays
from deepprl.data.interactions import Interactions

HISTORY_LENGTH = 10


def history_index(data: Interactions, length: int = HISTORY_LENGTH) -> np.ndarray:
    """[N, L] indices of each event's previous L events of the same user, oldest first;
    -1 pads the left of a short history."""
    steps = np.arange(length, 0, -1)  # L .. 1 events back
    idx = np.arange(data.n_events)[:, None] - steps[None, :]
    starts = np.flatnonzero(np.r_[True, data.user[1:] != data.user[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, data.n_events]))
    return np.where(idx >= first[:, None], idx, -1)


@dataclass(frozen=True)
class Batch:
    """Model inputs for B events (tensors)."""

    user: torch.Tensor  # [B] int64
    hist_items: torch.Tensor  # [B, L] int64, 0 = padding
    hist_gaps: torch.Tensor  # [B, L] float32, log1p(hours before that step)
    hist_context: torch.Tensor  # [B, L, Fc]
    hist_mask: torch.Tensor  # [B, L] bool, True where a step exists
    context: torch.Tensor  # [B, Fc] the event's own context

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @classmethod
    def of(cls, steps: StepArrays) -> Batch:
        """The tensors of NumPy inputs (deepprl.data.inputs), sharing their memory."""
        return cls(user=torch.from_numpy(steps.user),
                   hist_items=torch.from_numpy(steps.hist_items),
                   hist_gaps=torch.from_numpy(steps.hist_gaps),
                   hist_context=torch.from_numpy(steps.hist_context),
                   hist_mask=torch.from_numpy(steps.hist_mask),
                   context=torch.from_numpy(steps.context))


def make_batch(data: Interactions, hist: np.ndarray, events: np.ndarray) -> Batch:
    """Gather inputs for `events` [B] whose histories are `hist` [B, L] (rows of
    history_index, or built by hand for an event not yet logged)."""
    return Batch.of(step_arrays(data, hist, events))


def fully_observed(data: Interactions) -> bool:
    """True when ground truth is known for every (user, item, time), as in the simulator."""
    return bool(getattr(data.valuer, "fully_observed", False))


def candidate_counts(data: Interactions, pool: np.ndarray, *,
                     max_candidates: int | None = None) -> np.ndarray:
    """[U + 1] how many candidates `candidate_items` gives each user's events for `pool`
    (a mask [N]), without building them: the distinct items of the user's pool events on
    logged data (capped at `max_candidates`), every item (or the world's sample) where
    ground truth is fully known. Index 0 is padding."""
    if fully_observed(data):
        sample = getattr(data.valuer, "candidate_sample", None)
        width = data.n_items if sample is None else min(sample, data.n_items)
        return np.full(data.n_users + 1, width, dtype=np.int64)
    keys = np.unique(data.user[pool] * (data.n_items + 1) + data.item[pool])  # distinct pairs
    counts = np.bincount(keys // (data.n_items + 1), minlength=data.n_users + 1)
    return counts if max_candidates is None else np.minimum(counts, max_candidates)


def count_rankable(data: Interactions, pool: np.ndarray, *, k: int,
                   max_candidates: int | None = None) -> int:
    """How many `pool` events have more than k candidates among the pool (the events a
    top-k metric or reward can tell apart; the rest are excluded everywhere)."""
    counts = candidate_counts(data, pool, max_candidates=max_candidates)
    return int((counts[data.user[pool]] > k).sum())


def candidate_items(data: Interactions, events: np.ndarray, pool: np.ndarray, *,
                    max_candidates: int | None = None, seed: int = 0) -> np.ndarray:
    """[E, C] candidate items per event, 0-padded.

    Fully observed data: every item, or a seeded sample of `candidate_sample` items per
    user where the world declares one (movielens-sim: 100 of its 1,682 movies, so that
    every method ranks the same affordable candidates); `max_candidates` does not apply.
    Logged data: the distinct items the event's user has in the `pool` events (a mask [N],
    e.g. the test period): the items whose ground truth exists. With `max_candidates`, a
    user's larger set is subsampled (seeded, per user)."""
    every = np.arange(1, data.n_items + 1)
    if fully_observed(data):
        max_candidates = getattr(data.valuer, "candidate_sample", None)
        if max_candidates is None or data.n_items <= max_candidates:
            return np.broadcast_to(every, (len(events), data.n_items)).copy()
    users = data.user[events]
    per_user: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for u in np.unique(users):
        span = data.user_events(int(u))
        items = every if fully_observed(data) else np.unique(data.item[span[pool[span]]])
        if max_candidates is not None and len(items) > max_candidates:
            items = np.sort(rng.choice(items, size=max_candidates, replace=False))
        per_user[int(u)] = items
    width = max((len(v) for v in per_user.values()), default=0)
    out = np.zeros((len(events), width), dtype=np.int64)
    for u, items in per_user.items():
        out[users == u, : len(items)] = items
    return out
