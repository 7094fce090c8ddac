"""The validated, id-encoded interaction log every model and evaluator reads.

Indices: users and items are encoded to 1..U and 1..I; index 0 is reserved for
padding (an empty history step) and never names a real id.
Events are sorted by (user, time), so one user's events are contiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class UnknownIdError(ValueError):
    """Raised when an id that is not in the training log is asked for at inference."""


class Valuer(Protocol):
    """Ground truth for counterfactual items: what a candidate would have scored at an event."""

    def values(
        self, data: Interactions, events: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """events [E] event indices, items [E, C] item indices (0 = padding)
        -> (objectives [E, C, K] float32, reward [E, C] float32); NaN where unknown."""
        ...


@dataclass(frozen=True, eq=False)
class Interactions:
    """An encoded log. Arrays are aligned on the event axis N (sorted by user, then time)."""

    name: str
    objective_names: tuple[str, ...]
    user: np.ndarray  # [N] int64, 1..U
    item: np.ndarray  # [N] int64, 1..I
    time: np.ndarray  # [N] float64, seconds (event order when the log has no clock)
    objectives: np.ndarray  # [N, K] float32 in [0, 1]
    reward: np.ndarray  # [N] float32
    context: np.ndarray  # [N, Fc] float32, per-event context features
    user_features: np.ndarray  # [U + 1, Fu] float32; row 0 is zeros
    item_features: np.ndarray  # [I + 1, Fi] float32; row 0 is zeros
    user_ids: tuple[str, ...]  # raw id of user index u is user_ids[u - 1]
    item_ids: tuple[str, ...]
    context_names: tuple[str, ...] = ()
    user_feature_names: tuple[str, ...] = ()
    item_feature_names: tuple[str, ...] = ()
    valuer: Valuer | None = field(default=None, repr=False)
    encoding: dict[str, Any] = field(default_factory=dict, repr=False)
    """The statistics the encoder fitted (objective scales, feature means and categories),
    JSON-able; a run stores them with its tables (deepprl.inference_data)."""
    source: str = ""
    """The file (or folder) the log was read from, for messages; empty: use the name."""

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "time", "objectives", "reward", "context"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows, "
                                 f"expected {n}")
        if self.objectives.shape[1] != len(self.objective_names):
            raise ValueError("objective_names does not match the objectives' width")

    # -- sizes ---------------------------------------------------------------------------
    @property
    def n_events(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_objectives(self) -> int:
        return len(self.objective_names)

    # -- id lookups ----------------------------------------------------------------------
    @cached_property
    def _user_index(self) -> dict[str, int]:
        return {raw: i + 1 for i, raw in enumerate(self.user_ids)}

    @cached_property
    def _item_index(self) -> dict[str, int]:
        return {raw: i + 1 for i, raw in enumerate(self.item_ids)}

    def user_index(self, raw_id: object) -> int:
        """Raw user id -> index; raises UnknownIdError for an id not in the log."""
        return _lookup(self._user_index, raw_id, "user", self.log_name)

    def item_index(self, raw_id: object) -> int:
        return _lookup(self._item_index, raw_id, "item", self.log_name)

    @property
    def log_name(self) -> str:
        """The log's file name (not its folders) where it came from a file, else its name."""
        return Path(self.source).name if self.source else self.name

    def item_indices(self, raw_ids: Sequence[object]) -> np.ndarray:
        index = self._item_index
        try:  # one dict lookup per id, in C loops: the hot path of a request
            return np.fromiter(map(index.__getitem__, map(str, raw_ids)), dtype=np.int64,
                               count=len(raw_ids))
        except KeyError:
            return np.array([self.item_index(r) for r in raw_ids], dtype=np.int64)

    # -- ground truth --------------------------------------------------------------------
    def candidate_values(self, events: np.ndarray, items: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """True objectives [E, C, K] and reward [E, C] of candidate items at events; NaN at
        padding (item 0).

        Every valuer values each (event, item) pair on its own, so where rows are padded
        (a logged log's candidate sets differ in size) only the P real pairs are valued, as
        P one-candidate rows: a few times less work than the padded [E, C]."""
        valuer = self.valuer if self.valuer is not None else LoggedValuer()
        live = items > 0  # [E, C]
        if live.all():
            return valuer.values(self, events, items)
        rows = np.nonzero(live)[0]  # [P] the row of each real pair
        pair_objectives, pair_reward = valuer.values(self, events[rows], items[live][:, None])
        objectives = np.full((*items.shape, self.n_objectives), np.nan, dtype=np.float32)
        reward = np.full(items.shape, np.nan, dtype=np.float32)
        objectives[live], reward[live] = pair_objectives[:, 0], pair_reward[:, 0]
        return objectives, reward

    @cached_property
    def pair_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted (user, item) keys and the row of the latest event of each pair."""
        keys = self.user * (self.n_items + 1) + self.item
        order = np.lexsort((self.time, keys))  # by key, then time: a run's last is latest
        sorted_keys = keys[order]
        last = np.r_[sorted_keys[1:] != sorted_keys[:-1], True]
        return sorted_keys[last], order[last]

    def user_events(self, user: int) -> np.ndarray:
        """Event indices of one user, in time order."""
        lo, hi = np.searchsorted(self.user, [user, user + 1])
        return np.arange(lo, hi)


def _lookup(index: dict[str, int], raw_id: object, kind: str, source: str) -> int:
    key = str(raw_id)
    if key not in index:
        raise UnknownIdError(f"unknown {kind} id {key!r}: not in the training log ({source})")
    return index[key]


class LoggedValuer:
    """Ground truth from the log itself: a candidate's values are those logged for the
    (user, item) pair (the latest such event). Pairs never logged are NaN."""

    def values(self, data: Interactions, events: np.ndarray, items: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        keys, rows = data.pair_table
        query = data.user[events][:, None] * (data.n_items + 1) + items  # [E, C]
        pos = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
        found = (keys[pos] == query) & (items > 0)
        src = rows[pos]
        objectives = np.where(found[..., None], data.objectives[src], np.nan).astype(np.float32)
        reward = np.where(found, data.reward[src], np.nan).astype(np.float32)
        return objectives, reward
