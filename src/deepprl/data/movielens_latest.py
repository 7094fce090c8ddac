"""MovieLens latest-small (GroupLens, 2018) with the ML-100K objectives, and sparsity subsets.

Files (read from disk, never bundled): `ratings.csv` (userId, movieId, rating 0.5-5,
timestamp in unix seconds) and `movies.csv` (movieId, title ending in "(year)", genres
separated by `|`, "(no genres listed)" for none). See `deepprl.data.locate` for where the
folder `movielens-latest-small` is looked for.

Objectives, as for MovieLens-100K (`deepprl.data.movielens`), all in [0, 1] and maximised
(the paper's consistency and recency by default; option `objectives` adds relevance):
- consistency: Jaccard similarity of the item's genres with those of the user's previous
  item (0 at a user's first event);
- recency: exp(-age / 365 days), age = interaction time - release date, floored at 0. The
  file gives only a release *year* (the last "(YYYY)" or "(YYYY-YYYY)" of the title), so the
  release date is taken as 1 July of that year, 00:00 UTC (mid-year: the error is at most
  half a year either way); a title without a year uses the movie's first rating time;
- relevance: rating / 5.
Reward: rating / 5. Context: hour, weekday, time since the previous interaction. Item
features: genre one-hot (the genres found in movies.csv) and release year. No user features.
Ties in time keep the file's order.

Sparsity subsets (paper §5.7, Tables 9-10). The paper reports three Spotify logs whose
"sparsity" = records / (users x items) rises from Spotify-1 (the whole log of its Table 2:
970,013 records, 0.004%) to Spotify-3 (11,921 records, 0.1437%) as users, items and records
fall; the paper calls Spotify-3 the one "with the highest sparsity level and the lowest data
size". Note that this ratio is what is usually called *density*: by that usual reading
Spotify-3 is the densest log, not the sparsest. We mirror the table's pattern, with the
paper's definition of the ratio:
- subset 1 is the whole log (as Spotify-1 is the whole Spotify log);
- subset 2 is a seeded random third of the users, with all their ratings;
- subset 3 is a seeded random third of subset 2's users (a ninth of all users).
The subsets are nested (3 within 2 within 1): users are drawn in the order of one seeded
permutation of the user ids and subset k keeps a prefix of it. Sampling whole users keeps
each remaining user's history intact, while items rated by no remaining user drop out; the
item count thus falls slower than the user count and records / (users x items) rises from
subset 1 to subset 3, as in Table 9.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from deepprl.data.interactions import Interactions
from deepprl.data.locate import find_data_dir
from deepprl.data.movielens import PAPER_OBJECTIVES, genre_time_log
from deepprl.data.objectives import select_objectives
from deepprl.data.schema import DataError, Mapping, ObjectiveSpec

FOLDER = "movielens-latest-small"
FILES = ("ratings.csv", "movies.csv")
NO_GENRE = "(no genres listed)"
SUBSET_USER_FRACTIONS = {1: 1.0, 2: 1 / 3, 3: 1 / 9}
YEAR_PATTERN = r"\((\d{4})(?:\s*[-\u2013]\s*\d{4})?\)\s*$"


def load_movielens_latest(path: str | Path | None = None, *, subset: int | None = None,
                          seed: int = 0, objectives: str | Sequence[str] = PAPER_OBJECTIVES
                          ) -> Interactions:
    """The whole log, or sparsity subset 1, 2 or 3 drawn with `seed` (module docstring),
    with the `objectives` asked for (names of deepprl.data.movielens.OBJECTIVES)."""
    root = find_data_dir(FOLDER, FILES, path)
    ratings, movies = read_files(root)
    if subset is not None:
        ratings = subset_ratings(ratings, subset, seed=seed)
    genres = genre_vocabulary(movies)
    columns = tuple(f"genre={g}" for g in genres)
    items = movies.select(
        "movieId",
        release_timestamps(movies["title"]).alias("release_ts"),
        *[pl.col("genres").str.split("|").list.contains(g).cast(pl.Float64).alias(c)
          for g, c in zip(genres, columns, strict=True)],
    )
    mapping = Mapping(
        user="userId", item="movieId", timestamp="timestamp", reward="rating",
        reward_min=0.0, reward_max=5.0,
        objectives=(ObjectiveSpec("consistency", "consistency"),
                    ObjectiveSpec("recency", "recency")),
        item_features=(*columns, "release_year"), source=FOLDER,
    )
    name = FOLDER if subset is None else f"{FOLDER}-{subset}"
    return select_objectives(genre_time_log(ratings, items, mapping=mapping, genres=columns,
                                            source=str(root), name=name), objectives)


def read_files(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """ratings.csv and movies.csv, with their columns checked; every rated movie must be in
    movies.csv."""
    ratings = pl.read_csv(root / "ratings.csv", schema_overrides={"rating": pl.Float64})
    movies = pl.read_csv(root / "movies.csv", schema_overrides={"title": pl.String,
                                                                 "genres": pl.String})
    for name, frame, needed in (("ratings.csv", ratings, ("userId", "movieId", "rating",
                                                          "timestamp")),
                                ("movies.csv", movies, ("movieId", "title", "genres"))):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"{root / name}: missing column {missing[0]!r}; columns present: "
                            f"{frame.columns}")
    unknown = ratings.filter(~pl.col("movieId").is_in(movies["movieId"].implode()))
    if unknown.height:
        raise DataError(f"{root / 'ratings.csv'}: movieId {unknown['movieId'][0]} is not in "
                        f"movies.csv")
    return ratings, movies.with_columns(pl.col("genres").fill_null(NO_GENRE))


def genre_vocabulary(movies: pl.DataFrame) -> tuple[str, ...]:
    """Sorted genres named in movies.csv, without the "(no genres listed)" marker."""
    names = movies["genres"].str.split("|").explode().unique().to_list()
    return tuple(sorted(g for g in names if g and g != NO_GENRE))


def release_timestamps(titles: pl.Series) -> pl.Series:
    """Unix seconds of 1 July, 00:00 UTC, of the year ending each title; null without one."""
    year = pl.DataFrame({"year": titles.str.extract(YEAR_PATTERN, 1).cast(pl.Int32)})
    release = pl.date(pl.col("year"), 7, 1).cast(pl.Datetime("us")).dt.epoch("s")
    return year.select(release.cast(pl.Float64)).to_series()


def subset_users(users: np.ndarray, subset: int, *, seed: int) -> np.ndarray:
    """Users of sparsity subset 1, 2 or 3: a prefix of one seeded permutation of the sorted
    distinct ids, so subset 3 lies within 2, and 2 within 1."""
    if subset not in SUBSET_USER_FRACTIONS:
        raise ValueError(f"subset must be one of {sorted(SUBSET_USER_FRACTIONS)}, got {subset!r}")
    distinct = np.unique(users)
    order = np.random.default_rng(seed).permutation(len(distinct))
    n = max(1, round(len(distinct) * SUBSET_USER_FRACTIONS[subset]))
    return np.sort(distinct[order[:n]])


def subset_ratings(ratings: pl.DataFrame, subset: int, *, seed: int) -> pl.DataFrame:
    """The rows of `ratings` whose user belongs to the subset (file order kept)."""
    keep = subset_users(ratings["userId"].to_numpy(), subset, seed=seed)
    return ratings.filter(pl.col("userId").is_in(keep.tolist()))


def subset_statistics(path: str | Path | None = None, *, seed: int = 0) -> pl.DataFrame:
    """Table 9 analogue: per subset, records, users, items and the paper's sparsity ratio
    records / (users x items), in percent."""
    ratings, _ = read_files(find_data_dir(FOLDER, FILES, path))
    rows = []
    for subset in SUBSET_USER_FRACTIONS:
        part = subset_ratings(ratings, subset, seed=seed)
        users, items = part["userId"].n_unique(), part["movieId"].n_unique()
        rows.append({"subset": subset, "records": part.height, "users": users,
                     "items": items, "sparsity_pct": 100.0 * part.height / (users * items)})
    return pl.DataFrame(rows)
