"""What inference needs from the training log, kept in the run so that it recommends and
serves without the log: each user's last L + 1 events (items, times, objectives, encoded
context), the user and item feature tables, the items each user has had (exclude_seen) and
the encoders' statistics.

The tail of a user's log is a real Interactions (sorted by user, then time), so the code
that builds a user's state from the log (make_batch, next_event_batch, the service's
history) runs on it unchanged: the next event's history is the last L events, and the one
before them gives the oldest step's gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepprl.data.interactions import Interactions

FORMAT = 1  # of the stored tables; a loader refuses another
_EVENT_ARRAYS = ("user", "item", "time", "objectives", "reward", "context")


@dataclass(frozen=True)
class SeenItems:
    """The distinct items each user has in the training log, as compressed rows, and how
    many events each user has there."""

    ptr: np.ndarray  # [U + 2] int64: user u's items are items[ptr[u] : ptr[u + 1]]
    items: np.ndarray  # [P] int64 item indices 1..I, sorted within a user
    events: np.ndarray  # [U + 1] int64 events per user in the log (row 0: none)

    @classmethod
    def from_log(cls, data: Interactions) -> SeenItems:
        keys = data.pair_table[0]  # sorted distinct user * (I + 1) + item
        users, items = np.divmod(keys, data.n_items + 1)
        ptr = np.searchsorted(users, np.arange(data.n_users + 2)).astype(np.int64)
        events = np.bincount(data.user, minlength=data.n_users + 1).astype(np.int64)
        return cls(ptr=ptr, items=items.astype(np.int64), events=events)

    def of(self, user: int) -> np.ndarray:
        """[n] the items user index `user` has had (none for index 0 or out of range)."""
        if not 0 <= user < len(self.ptr) - 1:
            return np.zeros(0, dtype=np.int64)
        return self.items[self.ptr[user] : self.ptr[user + 1]]


def items_seen(data: Interactions, seen: SeenItems | None, user: int) -> np.ndarray:
    """The items a user has had: from the stored table where there is one, else from the
    log itself (which then holds every event of the user)."""
    return seen.of(user) if seen is not None else data.item[data.user_events(user)]


def events_logged(data: Interactions, seen: SeenItems | None, user: int) -> int:
    """How many events a user has in the training log (as items_seen)."""
    if seen is not None:
        return int(seen.events[user]) if 0 <= user < len(seen.events) else 0
    return len(data.user_events(user))


@dataclass(frozen=True)
class InferenceTables:
    """A run's stored view of its training log (see the module docstring)."""

    data: Interactions  # each user's last L + 1 events; features, ids and names in full
    seen: SeenItems
    history_length: int  # L
    frozen_weights: np.ndarray | None = None  # [U + 1, K] per-user alpha; NaN row: none
    encoding: dict[str, Any] = field(default_factory=dict)  # the encoders' statistics


def tail_events(data: Interactions, keep: int) -> np.ndarray:
    """[M] indices of each user's last `keep` events, in log order."""
    starts = np.flatnonzero(np.r_[True, data.user[1:] != data.user[:-1]])
    ends = np.r_[starts[1:], data.n_events]
    from_end = np.repeat(ends, ends - starts) - np.arange(data.n_events)  # 1 for the last
    return np.flatnonzero(from_end <= keep)


def tables_from_log(data: Interactions, history_length: int,
                    frozen_weights: np.ndarray | None = None) -> InferenceTables:
    """The tables of a trained run, from its full training log."""
    rows = tail_events(data, history_length + 1)
    tail = Interactions(
        name=data.name, objective_names=data.objective_names,
        user=data.user[rows], item=data.item[rows], time=data.time[rows],
        objectives=data.objectives[rows], reward=data.reward[rows], context=data.context[rows],
        user_features=data.user_features, item_features=data.item_features,
        user_ids=data.user_ids, item_ids=data.item_ids, context_names=data.context_names,
        user_feature_names=data.user_feature_names,
        item_feature_names=data.item_feature_names)
    return InferenceTables(data=tail, seen=SeenItems.from_log(data),
                           history_length=history_length, frozen_weights=frozen_weights,
                           encoding=dict(getattr(data, "encoding", {}) or {}))


def to_arrays(tables: InferenceTables) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays for a safetensors file, JSON-able description) of `tables`; the names and
    ids are the run schema's (schema.json), not repeated here."""
    d = tables.data
    arrays = {name: np.ascontiguousarray(getattr(d, name)) for name in _EVENT_ARRAYS}
    arrays |= {"user_features": d.user_features, "item_features": d.item_features,
               "seen_ptr": tables.seen.ptr, "seen_items": tables.seen.items,
               "user_events": tables.seen.events}
    if tables.frozen_weights is not None:
        arrays["frozen_weights"] = tables.frozen_weights.astype(np.float32)
    meta = {"format": FORMAT, "history_length": tables.history_length,
            "events_per_user": tables.history_length + 1, "events": d.n_events,
            "users": d.n_users, "items": d.n_items, "encoding": tables.encoding}
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta


def from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                schema: dict[str, Any]) -> InferenceTables:
    """Tables back from to_arrays' output and the run's schema; ValueError naming what is
    inconsistent (a corrupt or hand-edited run)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"stored tables of format {got!r}, this version reads format "
                         f"{FORMAT}")
    needed = {*_EVENT_ARRAYS, "user_features", "item_features", "seen_ptr", "seen_items",
              "user_events"}
    missing = sorted(needed - set(arrays))
    if missing:
        raise ValueError(f"stored tables lack {missing}")
    user_ids = tuple(str(u) for u in schema["user_ids"])
    item_ids = tuple(str(i) for i in schema["item_ids"])
    n_users, n_items = len(user_ids), len(item_ids)
    data = Interactions(
        name=str(schema.get("dataset", "log")),
        objective_names=tuple(schema["objectives"]),
        user=arrays["user"].astype(np.int64, copy=False),
        item=arrays["item"].astype(np.int64, copy=False),
        time=arrays["time"].astype(np.float64, copy=False),
        objectives=arrays["objectives"], reward=arrays["reward"], context=arrays["context"],
        user_features=arrays["user_features"], item_features=arrays["item_features"],
        user_ids=user_ids, item_ids=item_ids,
        context_names=tuple(schema.get("context", ())),
        user_feature_names=tuple(schema.get("user_features", ())),
        item_feature_names=tuple(schema.get("item_features", ())))
    seen = SeenItems(ptr=arrays["seen_ptr"].astype(np.int64, copy=False),
                     items=arrays["seen_items"].astype(np.int64, copy=False),
                     events=arrays["user_events"].astype(np.int64, copy=False))
    frozen = arrays.get("frozen_weights")
    _check(data, seen, frozen, n_users, n_items)
    return InferenceTables(data=data, seen=seen, history_length=int(meta["history_length"]),
                           frozen_weights=frozen, encoding=dict(meta.get("encoding") or {}))


def _check(data: Interactions, seen: SeenItems, frozen: np.ndarray | None, n_users: int,
           n_items: int) -> None:
    """The invariants the scoring code relies on (indices in range, sorted by user)."""
    problems = []
    if data.user_features.shape[0] != n_users + 1 or data.item_features.shape[0] != n_items + 1:
        problems.append("feature tables do not match the schema's user and item ids")
    if data.n_events and (data.user.min() < 1 or data.user.max() > n_users
                          or (np.diff(data.user) < 0).any()):
        problems.append("event users out of range or not sorted")
    if data.n_events and (data.item.min() < 1 or data.item.max() > n_items):
        problems.append("event items out of range")
    if len(seen.ptr) != n_users + 2 or seen.ptr[0] != 0 or (np.diff(seen.ptr) < 0).any() \
            or seen.ptr[-1] != len(seen.items):
        problems.append("the seen-items table does not match the users")
    elif len(seen.items) and (seen.items.min() < 1 or seen.items.max() > n_items):
        problems.append("seen items out of range")
    if seen.events.shape != (n_users + 1,) or (seen.events < 0).any():
        problems.append("the events-per-user table does not match the users")
    elif (np.bincount(data.user, minlength=n_users + 1) > seen.events).any():
        problems.append("a user has more stored events than logged ones")
    if frozen is not None and frozen.shape != (n_users + 1, data.n_objectives):
        problems.append("frozen weights do not match the users and objectives")
    if problems:
        raise ValueError("; ".join(problems))
