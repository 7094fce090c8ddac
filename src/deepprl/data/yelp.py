"""Yelp (the HIN-Datasets release: 198,397 ratings, 16,239 users, 14,284 businesses) with
the paper's Yelp objectives (§5.1), relevance and novelty.

Files, tab-separated, no header, read from their folder and never copied or redistributed
(Yelp's terms; see `deepprl.data.locate` for where the folder `yelp-hin` is looked for):
`user_business.dat` (user, business, stars 1-5), `business_category.dat` (business,
category, 1) and `business_city.dat` (business, city, 1). Ids are integer codes; the
release has no names. The third column of the two business files is ignored (a listed
pair means membership).

No timestamps. The release carries no time, so the order of a user's ratings is unknown:
we draw it as a seeded random permutation (option `seed`, default 0) and the event "time" is
the event's position within its user (0, 1, ...). There is no clock context: the only
context is log1p of the gap in events (1 between consecutive events). The same seed gives
the same order, whatever the `users` option.

Objectives, both 0/1 and maximised, from the business categories (binary, as the paper
words them, not a Jaccard similarity):
- relevance: 1 if the business shares at least one category with the user's previous
  business; 0 at the user's first event;
- novelty: 1 if the business has at least one category and none of its categories occurs
  among the categories of any earlier business of the user (so 1 at a first event).
A business without any category (104 of the release's businesses) scores 0 on both: it
can be shown to match nothing, nor to be new. Novelty 1 implies relevance 0.
A third objective, `rating` = stars / 5 (the reward, predicted as an objective), is chosen
with the dataset option `objectives` (e.g. objectives=rating,relevance,novelty); it is
named `rating` here, not `relevance` as on MovieLens, because the paper's Yelp objective
already bears that name. The default is the paper's pair, relevance and novelty.
Reward: stars / 5. Item features: multi-hot of the TOP_CATEGORIES most frequent categories
(over the log's businesses), a `category=other` flag for any other category, and the city
(one-hot of the 32 most frequent cities, all-zero for the rest). No user features.

Option `users`: keep a seeded sample of that many users (all their ratings), the first ones
of one seeded permutation of the user ids, so a smaller sample lies within a larger one
drawn with the same seed. The whole log is affordable for the data pipeline but costly to
train on repeatedly; e.g. users=2000 keeps about an eighth of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from deepprl.data.encode import encode_log
from deepprl.data.interactions import Interactions, LoggedValuer
from deepprl.data.locate import find_data_dir
from deepprl.data.objectives import select_objectives
from deepprl.data.schema import DataError, Mapping, ObjectiveSpec

FOLDER = "yelp-hin"
FILES = ("user_business.dat", "business_category.dat", "business_city.dat")
TOP_CATEGORIES = 32
PAPER_OBJECTIVES = ("relevance", "novelty")
OBJECTIVES = (*PAPER_OBJECTIVES, "rating")
"""Every objective the loader computes, in the order its valuer answers."""


def load_yelp(path: str | Path | None = None, *, seed: int = 0, users: int | None = None,
              objectives: str | Sequence[str] = PAPER_OBJECTIVES) -> Interactions:
    """The log in a seeded random order within each user (module docstring), with the
    `objectives` asked for (names of OBJECTIVES, in that order)."""
    root = find_data_dir(FOLDER, FILES, path)
    log, categories, cities = read_files(root)
    log = ordered_log(log, seed=seed, users=users)
    user = np.unique(log["user"].to_numpy(), return_inverse=True)[1] + 1
    item_ids, item = np.unique(log["business"].to_numpy(), return_inverse=True)
    item = item + 1
    categories = categories.filter(pl.col("business").is_in(item_ids.tolist()))
    valuer = CategoryValuer(categories=category_table(categories, item_ids), user=user,
                            item=item)
    events = np.arange(len(item))
    logged = valuer.objectives(user, item, events, item[:, None])[:, 0]  # [N, 2]
    features = category_features(categories, TOP_CATEGORIES)
    feature_names = tuple(c for c in features.columns if c != "business")
    frame = (log.with_columns(pl.Series("relevance", logged[:, 0]),
                              pl.Series("novelty", logged[:, 1]),
                              pl.col("stars").alias("rating"))
             .join(features, on="business", how="left")
             .with_columns(pl.col(feature_names).fill_null(0.0))
             .join(cities, on="business", how="left"))
    mapping = Mapping(
        user="user", item="business", reward="stars", reward_min=0.0, reward_max=5.0,
        objectives=(ObjectiveSpec("relevance", "relevance"), ObjectiveSpec("novelty", "novelty"),
                    ObjectiveSpec("rating", "rating", normalise="range", min=0.0, max=5.0)),
        item_features=(*feature_names, "city"), source=FOLDER,
    )
    name = FOLDER if users is None and seed == 0 else f"{FOLDER}-users{users or 'all'}-seed{seed}"
    data = encode_log(frame, mapping, source=str(root), name=name)
    if not (np.array_equal(data.user, user) and np.array_equal(data.item, item)):
        raise RuntimeError("yelp: the encoded order differs from the drawn order")
    data = replace(data, time=log["position"].to_numpy().astype(np.float64), valuer=valuer)
    return select_objectives(data, objectives)


def read_files(root: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(user, business, stars), (business, category), (business, city) as integer frames."""
    def read(name: str, columns: list[str]) -> pl.DataFrame:
        file = root / name
        try:
            frame = pl.read_csv(file, separator="\t", has_header=False)
        except pl.exceptions.NoDataError as err:
            raise DataError(f"{file}: the file is empty") from err
        if frame.width != 3:
            raise DataError(f"{file}: expected 3 tab-separated columns, found {frame.width}")
        frame = frame.rename(dict(zip(frame.columns, columns, strict=True)))
        for column in columns[:2]:
            if not frame.schema[column].is_integer() or frame[column].null_count():
                raise DataError(f"{file}: column {columns.index(column) + 1} ({column}) must "
                                f"hold integer ids, found {frame.schema[column]}")
        return frame

    log = read("user_business.dat", ["user", "business", "stars"])
    if not log.schema["stars"].is_numeric() or log["stars"].null_count():
        raise DataError(f"{root / 'user_business.dat'}: column 3 (stars) must be numeric")
    categories = read("business_category.dat", ["business", "category", "weight"])
    cities = read("business_city.dat", ["business", "city", "weight"])
    cities = cities.select("business", pl.col("city").cast(pl.String)).unique(
        "business", keep="first", maintain_order=True)
    return log, categories.select("business", "category").unique(maintain_order=True), cities


def ordered_log(log: pl.DataFrame, *, seed: int, users: int | None) -> pl.DataFrame:
    """The (sampled) log sorted by user, then by a seeded random key drawn for every row of
    the file; `position` is the event's rank within its user."""
    keys = np.random.default_rng([seed, 0]).permutation(log.height)
    log = log.with_columns(pl.Series("__key__", keys))
    if users is not None:
        distinct = np.unique(log["user"].to_numpy())
        if not 1 <= users <= len(distinct):
            raise ValueError(f"yelp: users must be in [1, {len(distinct)}] (the log's users), "
                             f"got {users}")
        order = np.random.default_rng([seed, 1]).permutation(len(distinct))
        log = log.filter(pl.col("user").is_in(distinct[order[:users]].tolist()))
    log = log.sort(["user", "__key__"])
    return log.with_columns(pl.int_range(pl.len()).over("user").alias("position")
                            ).drop("__key__")


def category_table(categories: pl.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """[I + 1, P] category codes of each business (row i = item index i), -1 padded;
    row 0 (padding) has none. P = the most categories any business has."""
    index = pl.DataFrame({"business": item_ids, "__item__": np.arange(1, len(item_ids) + 1)})
    codes = categories.select(pl.col("category").unique().sort()).with_row_index("__code__")
    pairs = (categories.join(index, on="business", how="inner")
             .join(codes, on="category", how="inner").sort("__item__", "__code__"))
    pairs = pairs.with_columns(pl.int_range(pl.len()).over("__item__").alias("__slot__"))
    width = int(pairs["__slot__"].to_numpy().max()) + 1 if pairs.height else 1
    table = np.full((len(item_ids) + 1, width), -1, dtype=np.int64)
    table[pairs["__item__"].to_numpy(), pairs["__slot__"].to_numpy()] = pairs["__code__"].to_numpy()
    return table


def category_features(categories: pl.DataFrame, top: int) -> pl.DataFrame:
    """business -> 0/1 columns category=<code> for the `top` categories held by the most
    businesses (ties: smaller code first), and category=other for any other category."""
    counts = categories.group_by("category").len().sort(["len", "category"],
                                                        descending=[True, False])
    kept = counts["category"].head(top).to_list()
    marked = categories.with_columns(
        pl.when(pl.col("category").is_in(kept)).then(pl.col("category").cast(pl.String))
        .otherwise(pl.lit("other")).alias("__name__"))
    wide = marked.select("business", pl.lit(1.0).alias("__one__"),
                         ("category=" + pl.col("__name__")).alias("__name__")).pivot(
        on="__name__", index="business", values="__one__", aggregate_function="max")
    names = [f"category={c}" for c in kept] + ["category=other"]
    return wide.select("business", *[pl.col(n).fill_null(0.0) if n in wide.columns
                                     else pl.lit(0.0).alias(n) for n in names])


class CategoryValuer:
    """Relevance and novelty of any business at any event (module docstring), and the
    user's logged rating / 5 as the objective `rating` and as reward (NaN for a business
    the user never rated).

    Built from the log's user [N] and item [N] indices, sorted by (user, position); the
    categories a user met before an event are looked up in a table of the first event at
    which each (user, category) pair occurs."""

    def __init__(self, *, categories: np.ndarray, user: np.ndarray, item: np.ndarray) -> None:
        self.categories = categories  # [I + 1, P], -1 = none
        self.n_codes = int(categories.max()) + 2
        cats = categories[item]  # [N, P]
        keys = user[:, None] * self.n_codes + cats
        events = np.broadcast_to(np.arange(len(item))[:, None], cats.shape)
        keys, events = keys[cats >= 0], events[cats >= 0]
        order = np.lexsort((events, keys))
        keys, events = keys[order], events[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        self.seen_keys, self.first_event = keys[first], events[first]
        self.logged = LoggedValuer()

    def objectives(self, user: np.ndarray, item: np.ndarray, events: np.ndarray,
                   items: np.ndarray) -> np.ndarray:
        """[E, C, 2] (relevance, novelty) of candidates items [E, C] at events [E] of the
        log whose indices are user [N], item [N]."""
        cand = self.categories[items]  # [E, C, P]
        has = cand >= 0
        before = np.maximum(events - 1, 0)
        has_prev = (events > 0) & (user[before] == user[events])  # [E]
        prev = self.categories[np.where(has_prev, item[before], 0)]  # [E, P]
        match = (cand[..., :, None] == prev[:, None, None, :]) & has[..., None]  # [E, C, P, P]
        relevance = match.any(axis=(-1, -2)) & has_prev[:, None]
        keys = user[events][:, None, None] * self.n_codes + cand
        pos = np.clip(np.searchsorted(self.seen_keys, keys), 0, max(len(self.seen_keys) - 1, 0))
        if len(self.seen_keys):
            seen = has & (self.seen_keys[pos] == keys) & (
                self.first_event[pos] < events[:, None, None])
        else:
            seen = np.zeros_like(has)
        novelty = has.any(-1) & ~seen.any(-1)
        return np.stack([relevance, novelty], axis=-1).astype(np.float32)

    def values(self, data: Interactions, events: np.ndarray, items: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        _, reward = self.logged.values(data, events, items)  # [E, C]
        objectives = np.concatenate([self.objectives(data.user, data.item, events, items),
                                     reward[..., None]], axis=-1)  # [E, C, OBJECTIVES]
        objectives[items == 0] = np.nan
        return objectives, reward
