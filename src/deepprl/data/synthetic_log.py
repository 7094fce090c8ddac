"""A synthetic logged interaction file whose users' trade-off depends on who they are and
when they come: the test bed of "does per-user weighting pay" on the generic loader.

Two objectives in [0, 1], predictable from item features (and a small user effect):
`taste` rises with the item feature `tone`, `depth` falls with it and rises with `size`,
so ranking by one costs the other. Each user has a segment (user feature 0 or 1) and a
habitual hour of the day; an event's hour is that habit plus noise. The user's weight on
`taste` at an event is

    w = clip(0.5 + spread * (2 * segment - 1) + swing * sin(2 pi hour / 24), 0.05, 0.95)

and the logged reward is w * taste + (1 - w) * depth: the preference-weighted value. One
static alpha serves one segment well and the other badly; a policy that reads the user
(state, segment) and the hour (context) can serve both.

write_preference_log writes `log.csv` and `mapping.toml` (the generic loader's schema,
docs/datasets.md) into a folder: `deepprl train --data DIR/log.csv --mapping
DIR/mapping.toml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

MAPPING = """# written by deepprl.data.synthetic_log
[columns]
user = "user_id"
item = "item_id"
timestamp = "ts"
reward = "reward"
user_features = ["segment"]
item_features = ["tone", "size"]

[[objectives]]
name = "taste"
column = "taste"
normalise = "none"

[[objectives]]
name = "depth"
column = "depth"
normalise = "none"
"""
START = 1_700_006_400  # 2023-11-15 00:00 UTC: hours of the day are UTC hours


@dataclass(frozen=True)
class PreferenceLog:
    """The generator's settings."""

    n_users: int = 200
    """Users (half in each segment, at random)."""
    n_items: int = 150
    """Items; each user meets distinct items, so events_per_user <= n_items."""
    events_per_user: int = 80
    """Events of each user, spread over `days`."""
    days: int = 60
    """Length of the log in days."""
    spread: float = 0.35
    """How far a segment moves the weight on taste from 0.5 (either way)."""
    swing: float = 0.15
    """Amplitude of the weight's daily cycle (hour of the event)."""
    hour_noise: float = 3.0
    """Std of an event's hour around its user's habitual hour."""
    noise: float = 0.03
    """Std of the objectives' noise around their item-feature value."""
    seed: int = 0
    """Seed of every draw."""


def preference(segment: np.ndarray, hour: np.ndarray, settings: PreferenceLog
               ) -> np.ndarray:
    """The weight on taste [N] of users in `segment` (0/1) at `hour` (0-24) of the day."""
    w = (0.5 + settings.spread * (2 * segment - 1)
         + settings.swing * np.sin(2 * np.pi * hour / 24))
    return np.clip(w, 0.05, 0.95)


def make_frame(settings: PreferenceLog) -> pl.DataFrame:
    """The log as a table (one row per event, in time order within each user)."""
    s = settings
    if not 1 <= s.events_per_user <= s.n_items:
        raise ValueError(f"events_per_user must lie in [1, n_items={s.n_items}], got "
                         f"{s.events_per_user}")
    rng = np.random.default_rng([s.seed, 15])
    tone, size = rng.uniform(0, 1, s.n_items), rng.uniform(0, 1, s.n_items)
    segment = rng.integers(0, 2, s.n_users)
    habit = rng.uniform(0, 24, s.n_users)
    user = np.repeat(np.arange(s.n_users), s.events_per_user)
    item = np.concatenate([rng.permutation(s.n_items)[: s.events_per_user]
                           for _ in range(s.n_users)])
    day = np.sort(rng.integers(0, s.days, (s.n_users, s.events_per_user)), axis=1).ravel()
    hour = np.mod(habit[user] + rng.normal(0, s.hour_noise, len(user)), 24)
    ts = START + day * 86400 + np.round(hour * 3600).astype(np.int64)
    taste = np.clip(0.1 + 0.75 * tone[item] + 0.05 * segment[user]
                    + rng.normal(0, s.noise, len(user)), 0, 1)
    depth = np.clip(0.8 - 0.6 * tone[item] + 0.15 * size[item]
                    + rng.normal(0, s.noise, len(user)), 0, 1)
    w = preference(segment[user], hour, s)
    frame = pl.DataFrame({
        "user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in item], "ts": ts,
        "taste": taste.round(4), "depth": depth.round(4),
        "reward": (w * taste + (1 - w) * depth).round(4),
        "segment": segment[user], "tone": tone[item].round(4), "size": size[item].round(4),
    })
    return frame.sort(["user_id", "ts"], maintain_order=True)


def write_preference_log(folder: str | Path, settings: PreferenceLog | None = None
                         ) -> tuple[Path, Path]:
    """Write `log.csv` and `mapping.toml` into `folder` (created); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, mapping = folder / "log.csv", folder / "mapping.toml"
    make_frame(settings or PreferenceLog()).write_csv(data)
    mapping.write_text(MAPPING, encoding="utf-8")
    return data, mapping
