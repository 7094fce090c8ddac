"""Model inputs as NumPy arrays, without torch: the history, gaps and contexts of events
(logged or the next one of a user) and the candidates of a recommend call.

deepprl.data.sequences.make_batch and deepprl.recommender wrap these in tensors (a Batch);
the torch-free recommend path (deepprl.export.runtime) feeds them to the exported graphs
as they are, so both paths build the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepprl.data.clock import CLOCK_CONTEXT, EVENT_CONTEXT, clock_features
from deepprl.data.interactions import Interactions
from deepprl.inference_data import SeenItems, items_seen


@dataclass(frozen=True)
class StepArrays:
    """Model inputs for B events (NumPy; the fields of deepprl.data.sequences.Batch)."""

    user: np.ndarray  # [B] int64
    hist_items: np.ndarray  # [B, L] int64, 0 = padding
    hist_gaps: np.ndarray  # [B, L] float32, log1p(hours before that step)
    hist_context: np.ndarray  # [B, L, Fc] float32
    hist_mask: np.ndarray  # [B, L] bool, True where a step exists
    context: np.ndarray  # [B, Fc] float32, the event's own context


def step_arrays(data: Interactions, hist: np.ndarray, events: np.ndarray) -> StepArrays:
    """Gather inputs for `events` [B] whose histories are `hist` [B, L] (rows of
    history_index, or built by hand for an event not yet logged)."""
    mask = hist >= 0
    safe = np.where(mask, hist, 0)
    prev = np.where(mask, safe - 1, 0)
    has_prev = mask & (prev >= 0) & (data.user[np.maximum(prev, 0)] == data.user[safe])
    gap_hours = np.where(has_prev, (data.time[safe] - data.time[np.maximum(prev, 0)]) / 3600.0,
                         0.0)
    return StepArrays(
        user=data.user[events],
        hist_items=np.where(mask, data.item[safe], 0),
        hist_gaps=np.log1p(np.maximum(gap_hours, 0.0)).astype(np.float32),
        hist_context=np.where(mask[..., None], data.context[safe], 0.0).astype(np.float32),
        hist_mask=mask,
        context=data.context[events],
    )


def clock_columns(data: Interactions) -> int:
    """How many leading context columns come from the clock: 5 (hour, weekday, gap) for a
    log with timestamps, 1 (log_gap_events) for a log whose time is an event counter."""
    return len(CLOCK_CONTEXT) if data.context_names[: len(CLOCK_CONTEXT)] == CLOCK_CONTEXT \
        else len(EVENT_CONTEXT)


def clock_context(data: Interactions, times: np.ndarray, prev_time: float | None
                  ) -> np.ndarray:
    """Clock context [n, clock_columns(data)] of n steps of ONE user at `times` [n]
    (non-decreasing; a step earlier than its predecessor gets gap 0), the gap of the first
    measured from `prev_time` (None: the user's first step, gap 0). The same encoding as the
    training log (deepprl.data.clock)."""
    times = np.asarray(times, dtype=np.float64)
    prev = np.r_[np.nan if prev_time is None else prev_time, times[:-1]][: len(times)]
    return clock_features(times, prev, has_clock=clock_columns(data) == len(CLOCK_CONTEXT))


def next_event_arrays(data: Interactions, user: int, length: int,
                      at_time: float | None = None) -> StepArrays:
    """Inputs for a user's next (not yet logged) event: the last `length` events as history,
    the context recomputed at `at_time` (clock features and the gap since the last event);
    other context columns carry over from the last event."""
    span = data.user_events(user)
    last = int(span[-1])
    hist = np.full(length, -1, dtype=np.int64)
    recent = span[-length:]
    hist[length - len(recent) :] = recent
    steps = step_arrays(data, hist[None], np.array([last]))
    when = data.time[last] if at_time is None else float(at_time)
    if not np.isfinite(when):
        raise ValueError(f"at_time must be a finite number, got {at_time!r}")
    if when < data.time[last]:
        raise ValueError(f"at_time {when} is before the user's last event ({data.time[last]})")
    clock = clock_context(data, np.array([when]), prev_time=float(data.time[last]))
    context = data.context[last].copy()
    context[: clock.shape[1]] = clock[0]
    return StepArrays(user=steps.user, hist_items=steps.hist_items, hist_gaps=steps.hist_gaps,
                      hist_context=steps.hist_context, hist_mask=steps.hist_mask,
                      context=context[None])


def candidate_list(data: Interactions, user_id: object, k: int,
                   candidates: Sequence[object] | None, exclude_seen: bool,
                   seen: SeenItems | None = None) -> tuple[int, np.ndarray]:
    """Validated (user index, candidate item indices [C]) of a recommend() call: the named
    candidates, else the whole catalogue (less the user's items with exclude_seen)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    user = data.user_index(user_id)
    if candidates is None:
        items = np.arange(1, data.n_items + 1)
        if exclude_seen:
            items = np.setdiff1d(items, items_seen(data, seen, user))
            if len(items) == 0:
                raise ValueError(f"user {user_id!r} has seen every item: nothing left to "
                                 f"recommend with exclude_seen")
        return user, items
    if not candidates:
        raise ValueError("candidates must not be empty")
    items = data.item_indices(candidates)
    ordered = np.sort(items)
    if (ordered[1:] == ordered[:-1]).any():
        raise ValueError("candidates name the same item more than once")
    return user, items


def top_k_order(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions [min(k, C)] of the best of scores [C], best first, ties to the lower
    position: the rule of deepprl.ranking.utility.top_k (a test holds them equal)."""
    return np.argsort(-scores, kind="stable")[:k]
