"""Per-event context from the clock alone (no polars: the inference path imports it)."""

from __future__ import annotations

import numpy as np

CLOCK_CONTEXT = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "log_gap_hours")


def time_context(user: np.ndarray, time: np.ndarray, *, has_clock: bool
                 ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-event context from the clock: hour and weekday on the unit circle, and
    log1p(hours since the user's previous event). Events must be sorted by (user, time)."""
    first = np.r_[True, user[1:] != user[:-1]]
    gap = np.where(first, 0.0, np.r_[0.0, np.diff(time)])
    if not has_clock:  # time is an event counter: only the gap (in events) is meaningful
        return np.log1p(gap)[:, None].astype(np.float32), ("log_gap_events",)
    hours = (time / 3600.0) % 24.0
    days = (time / 86400.0 + 3.0) % 7.0  # 1970-01-01 was a Thursday: +3 makes Monday 0
    cols = [np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24),
            np.sin(2 * np.pi * days / 7), np.cos(2 * np.pi * days / 7),
            np.log1p(gap / 3600.0) / 5.0]
    return np.stack(cols, axis=1).astype(np.float32), CLOCK_CONTEXT
