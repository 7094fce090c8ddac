"""The clock context and the history gaps: the one encoding of time every caller shares.

Training (data/encode.py, data/simulator.py), the interactive worlds (deepprl.envs), the
A/B simulation (deepprl.abtest) and serving (deepprl.ranking.context) build their time
features here, so that a change of the encoding reaches all of them. It lives in data/,
the lowest layer that needs it (encoding a log), and deepprl.ranking re-exports it.
"""

from __future__ import annotations

import numpy as np

CLOCK_CONTEXT = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "log_gap_hours")
EVENT_CONTEXT = ("log_gap_events",)
"""The context of a log whose time is an event counter (no clock): the gap in events."""
HOUR = 3600.0
GAP_SCALE = 5.0
"""log1p(gap hours) is divided by this in the context (about unit scale up to a month)."""


def _gap(times: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """times - prev, 0 where prev is NaN (no previous step) or later than times."""
    return np.where(np.isnan(prev), 0.0, np.maximum(times - np.nan_to_num(prev), 0.0))


def clock_features(times: np.ndarray, prev: np.ndarray, *, has_clock: bool = True
                   ) -> np.ndarray:
    """Context [..., F] of steps at `times` [...] whose previous step was at `prev` [...]
    (NaN: none, gap 0; a previous step later than the step also gives gap 0).

    has_clock (unix seconds): the CLOCK_CONTEXT columns, hour and weekday on the unit
    circle and log1p(gap hours) / GAP_SCALE; else (an event counter) EVENT_CONTEXT,
    log1p(gap in events)."""
    times = np.asarray(times, dtype=np.float64)
    gap = _gap(times, np.asarray(prev, dtype=np.float64))
    if not has_clock:  # time is an event counter: only the gap (in events) is meaningful
        return np.log1p(gap)[..., None].astype(np.float32)
    hours = (times / HOUR) % 24.0
    days = (times / 86400.0 + 3.0) % 7.0  # 1970-01-01 was a Thursday: +3 makes Monday 0
    cols = [np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24),
            np.sin(2 * np.pi * days / 7), np.cos(2 * np.pi * days / 7),
            np.log1p(gap / HOUR) / GAP_SCALE]
    return np.stack(cols, axis=-1).astype(np.float32)


def history_gaps(times: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Batch.hist_gaps [...] float32 of history steps at `times` [...] after `prev` [...]:
    log1p(hours since the previous step), 0 without one (NaN) or for a step back in time."""
    gap = _gap(np.asarray(times, dtype=np.float64), np.asarray(prev, dtype=np.float64))
    return np.log1p(gap / HOUR).astype(np.float32)


def time_context(user: np.ndarray, time: np.ndarray, *, has_clock: bool
                 ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-event context [N, F] of a log sorted by (user, time), and its column names: each
    event's clock_features, its gap measured from the user's previous event."""
    time = np.asarray(time, dtype=np.float64)
    first = np.r_[True, user[1:] != user[:-1]]
    prev = np.where(first, np.nan, np.r_[np.nan, time[:-1]])
    return (clock_features(time, prev, has_clock=has_clock),
            CLOCK_CONTEXT if has_clock else EVENT_CONTEXT)
