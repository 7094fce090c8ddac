"""MovieLens-100K with Kuaishou-style objectives (paper §5.1), bundled in the package.

Objectives, all in [0, 1] and maximised:
- consistency: Jaccard similarity between the genres of the item and those of the user's
  previous item (0 for a user's first event, which has no previous item);
- recency: exp(-age / tau) with age = interaction time - release date, in days
  (tau = 365; an item without a release date uses its first rating time);
- relevance: rating / 5 (the reward itself, as a predicted objective: issue 16).
The paper's pair, consistency and recency, is the default; the dataset option `objectives`
(deepprl.data.objectives) picks any two or more, in the order given.
Reward: rating / 5. Context: hour, weekday, time since the previous interaction; the
user's age, gender and occupation are static user features.
Ties in time (51% of consecutive events) keep the file's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

from deepprl.data.encode import encode_log
from deepprl.data.interactions import Interactions, LoggedValuer
from deepprl.data.objectives import select_objectives
from deepprl.data.schema import Mapping, ObjectiveSpec

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
RECENCY_TAU_DAYS = 365.0
PAPER_OBJECTIVES = ("consistency", "recency")
OBJECTIVES = (*PAPER_OBJECTIVES, "relevance")
"""Every objective the MovieLens loaders compute, in the order their valuers answer."""

MAPPING = Mapping(
    user="user_id", item="movie_id", timestamp="timestamp", reward="rating",
    reward_min=0.0, reward_max=5.0,
    objectives=(ObjectiveSpec("consistency", "consistency"), ObjectiveSpec("recency", "recency")),
    user_features=("age", "gender", "occupation"),
    item_features=(*GENRES, "release_year"),
    source="movielens-100k",
)


def bundled_dir() -> Path:
    return Path(str(resources.files("deepprl.data") / "bundled" / "movielens-100k"))


def load_movielens_100k(path: str | Path | None = None, *,
                        objectives: str | Sequence[str] = PAPER_OBJECTIVES) -> Interactions:
    """Load the bundled copy (or the three Parquet files under `path`), with the
    `objectives` asked for (names of OBJECTIVES, in that order)."""
    root = Path(path) if path is not None else bundled_dir()
    ratings = pl.read_parquet(root / "data.parquet")
    items = pl.read_parquet(root / "items.parquet")
    users = pl.read_parquet(root / "users.parquet")
    release = items["release_date"].str.strptime(pl.Date, "%d-%b-%Y", strict=False)
    items = items.with_columns(
        (release.cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64)).alias("release_ts"))
    return select_objectives(genre_time_log(ratings, items, users=users, mapping=MAPPING,
                                            genres=GENRES, source=str(root),
                                            name="movielens-100k"), objectives)


def genre_time_log(ratings: pl.DataFrame, items: pl.DataFrame, *, mapping: Mapping,
                   genres: tuple[str, ...], source: str, name: str,
                   users: pl.DataFrame | None = None) -> Interactions:
    """A MovieLens-style log with the OBJECTIVES: consistency, recency and relevance
    (the rating scaled by the mapping's reward range; the mapping names the first two).

    ratings: one row per rating, columns mapping.user, mapping.item, mapping.timestamp and
    mapping.reward; items: mapping.item, `release_ts` (unix seconds, null when unknown) and
    the 0/1 `genres` columns; users: mapping.user and mapping.user_features, when the data
    has user features. Ties in time keep the order of `ratings`."""
    user, item, clock = mapping.user, mapping.item, str(mapping.timestamp)
    first_seen = ratings.group_by(item).agg(pl.col(clock).min().alias("__first__"))
    items = items.join(first_seen, on=item, how="left").with_columns(
        pl.col("release_ts").fill_null(pl.col("__first__").cast(pl.Float64)),
    ).with_columns((pl.from_epoch(pl.col("release_ts").cast(pl.Int64), "s").dt.year()
                    .cast(pl.Float64)).alias("release_year"))

    frame = (ratings.with_row_index("__order__")
             .join(items.select(item, "release_ts", "release_year", *genres), on=item,
                   how="left"))
    if users is not None:
        frame = frame.join(users.select(user, *mapping.user_features), on=user, how="left")
    frame = frame.sort([user, clock, "__order__"])
    genre = frame.select(genres).to_numpy().astype(np.float32)
    first = np.r_[True, frame[user].to_numpy()[1:] != frame[user].to_numpy()[:-1]]
    consistency = np.where(first, 0.0, jaccard(genre, np.roll(genre, 1, axis=0)))
    age_days = np.maximum(frame[clock].to_numpy() - frame["release_ts"].to_numpy(), 0.0)
    frame = frame.with_columns(
        pl.Series("consistency", consistency),
        pl.Series("recency", np.exp(-age_days / 86400.0 / RECENCY_TAU_DAYS)),
        pl.col(str(mapping.reward)).alias("relevance"),  # a column of its own: not the reward's
    ).drop("__order__")
    relevance = ObjectiveSpec("relevance", "relevance", normalise="range",
                              min=mapping.reward_min, max=mapping.reward_max)
    data = encode_log(frame, replace(mapping, objectives=(*mapping.objectives, relevance)),
                      source=source, name=name)
    keep = items.with_columns(pl.col(item).cast(pl.String)).filter(
        pl.col(item).is_in(list(data.item_ids)))
    order = data.item_indices(keep[item].to_list())
    genre_table = np.zeros((data.n_items + 1, len(genres)), dtype=np.float32)
    genre_table[order] = keep.select(genres).to_numpy()
    release_table = np.zeros(data.n_items + 1)
    release_table[order] = keep["release_ts"].to_numpy()
    valuer = TimedGenreValuer(genres=genre_table, release_ts=release_table,
                              tau_days=RECENCY_TAU_DAYS)
    return replace(data, valuer=valuer)


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard similarity of 0/1 vectors; 0 when both are empty. [..., G] -> [...]"""
    inter = np.minimum(a, b).sum(-1)
    union = np.maximum(a, b).sum(-1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


class TimedGenreValuer:
    """Values candidates at the event's time: consistency with the user's previous item at
    that event, recency at that event's clock; relevance and the reward are the user's
    logged rating of the candidate / 5 (NaN for an item the user never rated)."""

    def __init__(self, *, genres: np.ndarray, release_ts: np.ndarray, tau_days: float) -> None:
        self.genres = genres  # [I + 1, G]
        self.release_ts = release_ts  # [I + 1]
        self.tau_days = tau_days
        self.logged = LoggedValuer()
        # each item's 0/1 genres as the bits of one integer: the Jaccard of two items is
        # then two popcounts instead of 2 G elementwise ops (evaluation values ~10^6 pairs)
        binary = genres.shape[1] <= 63 and bool(np.isin(genres, (0, 1)).all())
        self.genre_bits = (genres.astype(np.int64) << np.arange(genres.shape[1])).sum(1) \
            if binary else None  # [I + 1]

    def consistency(self, items: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Jaccard of the genres of items [E, C] and of prev [E] (float32 [E, C]), as
        jaccard() computes it."""
        if self.genre_bits is None:
            return jaccard(self.genres[items], self.genres[prev][:, None, :])
        a, b = self.genre_bits[items], self.genre_bits[prev][:, None]
        inter = np.bitwise_count(a & b).astype(self.genres.dtype)
        union = np.bitwise_count(a | b).astype(self.genres.dtype)
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    def values(self, data: Interactions, events: np.ndarray, items: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        has_prev = (events > 0) & (data.user[np.maximum(events - 1, 0)] == data.user[events])
        prev = np.where(has_prev, data.item[np.maximum(events - 1, 0)], 0)  # [E]
        consistency = self.consistency(items, prev)  # [E, C]
        consistency = np.where(has_prev[:, None], consistency, 0.0)
        age = np.maximum(data.time[events][:, None] - self.release_ts[items], 0.0)
        recency = np.exp(-age / 86400.0 / self.tau_days)
        _, reward = self.logged.values(data, events, items)
        objectives = np.stack([consistency, recency, reward], axis=-1).astype(np.float32)
        objectives[items == 0] = np.nan
        return objectives, reward
