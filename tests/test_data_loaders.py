"""Loaders: the generic CSV/Parquet loader with a mapping, and bundled MovieLens-100K."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from deepprl.data.clock import CLOCK_CONTEXT, time_context
from deepprl.data.encode import encode_log
from deepprl.data.generic import load_log
from deepprl.data.interactions import Interactions
from deepprl.data.movielens import GENRES, bundled_dir, load_movielens_100k
from deepprl.data.schema import read_mapping

# File order on purpose differs from the (user, time) order.
ROWS = [
    # user, item, ts, rating, rel, watch, dur, age, country, genre, device
    ("b", "x", 300, 5, 0.2, 10, 50, 40, "FR", "drama", "mobile"),
    ("a", "y", 200, 1, 0.4, 30, 0, 30, "DE", "comedy", "web"),
    ("a", "x", 100, 3, 1.0, 20, 100, 30, "DE", "drama", "mobile"),
    ("b", "z", 100, 4, 0.0, 50, 25, 40, "FR", "drama", "web"),
    ("c", "y", 400, 2, 0.6, 40, 75, 50, "DE", "comedy", "mobile"),
]
HEADER = ("user", "item", "ts", "rating", "rel", "watch", "dur", "age", "country", "genre",
          "device")
# Expected, in (user, time) order: a@100, a@200, b@100, b@300, c@400 (file rows 3, 2, 4, 1, 5).
SORTED_ROWS = [2, 1, 3, 0, 4]
EXP_USER = [1, 1, 2, 2, 3]
EXP_ITEM = [1, 2, 3, 1, 2]
EXP_TIME = [100.0, 200.0, 100.0, 300.0, 400.0]
EXP_REL = [1.0, 0.4, 0.0, 0.2, 0.6]
EXP_WATCH = [0.25, 0.5, 1.0, 0.0, 0.75]  # minmax over 10..50
EXP_DUR = [1.0, 0.0, 0.25, 0.5, 0.75]  # range 0..100
EXP_REWARD = [0.5, 0.0, 0.75, 1.0, 0.25]  # (rating - 1) / 4

TOML = """\
[columns]
user = "user"
item = "item"
timestamp = "ts"
reward = "rating"
user_features = ["age", "country"]
item_features = ["genre"]
context = ["device"]

[reward_scale]
min = 1
max = 5

[[objectives]]
name = "relevance"
column = "rel"

[[objectives]]
name = "watch"
column = "watch"
normalise = "minmax"

[[objectives]]
name = "duration"
column = "dur"
normalise = "range"
min = 0
max = 100
"""


def frame() -> pl.DataFrame:
    return pl.DataFrame([dict(zip(HEADER, r, strict=True)) for r in ROWS])


def write_csv(path: Path) -> Path:
    lines = [",".join(HEADER)] + [",".join(str(v) for v in r) for r in ROWS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mapping_dict() -> dict[str, object]:
    return {
        "columns": {"user": "user", "item": "item", "timestamp": "ts", "reward": "rating",
                    "user_features": ["age", "country"], "item_features": ["genre"],
                    "context": ["device"]},
        "reward_scale": {"min": 1, "max": 5},
        "objectives": [
            {"name": "relevance", "column": "rel"},
            {"name": "watch", "column": "watch", "normalise": "minmax"},
            {"name": "duration", "column": "dur", "normalise": "range", "min": 0, "max": 100},
        ],
    }


def check_expected(data: Interactions) -> None:
    assert data.n_events == 5
    assert data.n_users == 3
    assert data.n_items == 3
    assert data.objective_names == ("relevance", "watch", "duration")
    assert data.user_ids == ("a", "b", "c")
    assert data.item_ids == ("x", "y", "z")
    np.testing.assert_array_equal(data.user, EXP_USER)
    np.testing.assert_array_equal(data.item, EXP_ITEM)
    np.testing.assert_array_equal(data.time, EXP_TIME)
    np.testing.assert_allclose(data.objectives, np.c_[EXP_REL, EXP_WATCH, EXP_DUR], atol=1e-6)
    np.testing.assert_allclose(data.reward, EXP_REWARD, atol=1e-6)
    assert data.objectives.dtype == np.float32
    assert data.reward.dtype == np.float32
    # ids round-trip: every encoded event names the raw row it came from
    for event, row in enumerate(SORTED_ROWS):
        raw = ROWS[row]
        assert data.user_ids[data.user[event] - 1] == raw[0]
        assert data.item_ids[data.item[event] - 1] == raw[1]
        assert data.user_index(raw[0]) == data.user[event]
        assert data.item_index(raw[1]) == data.item[event]
    # user features: age z-scored over events, country one-hot by frequency (DE 3, FR 2)
    assert data.user_feature_names == ("age", "country=DE", "country=FR")
    ages = np.array([30, 40, 50], dtype=np.float64)  # one value per user
    z = (np.array([30.0, 40.0, 50.0]) - ages.mean()) / ages.std()
    np.testing.assert_allclose(data.user_features,
                               [[0, 0, 0], [z[0], 1, 0], [z[1], 0, 1], [z[2], 1, 0]], atol=1e-6)
    # item features: genre one-hot (drama 3, comedy 2); row 0 is padding
    assert data.item_feature_names == ("genre=drama", "genre=comedy")
    np.testing.assert_array_equal(data.item_features, [[0, 0], [1, 0], [0, 1], [1, 0]])
    # context: clock features then the one-hot device (mobile 3, web 2)
    assert data.context_names == (*CLOCK_CONTEXT, "device=mobile", "device=web")
    np.testing.assert_array_equal(data.context[:, 5:],
                                  [[1, 0], [0, 1], [0, 1], [1, 0], [1, 0]])
    gap_hours = np.array([0.0, 100.0, 0.0, 200.0, 0.0]) / 3600.0
    np.testing.assert_allclose(data.context[:, 4], np.log1p(gap_hours) / 5.0, rtol=1e-5)


def test_csv_with_toml_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(TOML, encoding="utf-8")
    data = load_log(write_csv(tmp_path / "shop.csv"), mapping)
    assert data.name == "shop"
    check_expected(data)


def test_parquet_with_json_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(mapping_dict()), encoding="utf-8")
    path = tmp_path / "shop.parquet"
    frame().write_parquet(path)
    check_expected(load_log(path, mapping))


def test_tsv_and_mapping_object(tmp_path: Path) -> None:
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(TOML, encoding="utf-8")
    mapping = read_mapping(mapping_file)
    path = tmp_path / "shop.tsv"
    frame().write_csv(path, separator="\t")
    check_expected(load_log(path, mapping))


def test_toml_and_json_mappings_agree_and_round_trip(tmp_path: Path) -> None:
    toml_file = tmp_path / "m.toml"
    toml_file.write_text(TOML, encoding="utf-8")
    json_file = tmp_path / "m.json"
    json_file.write_text(json.dumps(mapping_dict()), encoding="utf-8")
    from_toml, from_json = read_mapping(toml_file), read_mapping(json_file)
    assert from_toml == from_json
    assert from_toml.reward_min == 1.0
    assert from_toml.reward_max == 5.0
    again = tmp_path / "again.json"
    again.write_text(json.dumps(from_toml.to_dict()), encoding="utf-8")
    assert read_mapping(again) == from_toml


def test_reward_defaults_to_mean_of_objectives(tmp_path: Path) -> None:
    raw = mapping_dict()
    del raw["columns"]["reward"]  # type: ignore[attr-defined]
    del raw["reward_scale"]
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps(raw), encoding="utf-8")
    data = load_log(write_csv(tmp_path / "log.csv"), mapping)
    expected = np.mean(np.c_[EXP_REL, EXP_WATCH, EXP_DUR], axis=1)
    np.testing.assert_allclose(data.reward, expected, atol=1e-6)


def test_reward_without_scale_is_raw(tmp_path: Path) -> None:
    raw = mapping_dict()
    del raw["reward_scale"]
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps(raw), encoding="utf-8")
    data = load_log(write_csv(tmp_path / "log.csv"), mapping)
    np.testing.assert_array_equal(data.reward, [ROWS[r][3] for r in SORTED_ROWS])


def test_minmax_of_a_constant_column_is_half(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    frame().with_columns(pl.lit(7.0).alias("watch")).write_parquet(path)
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps(mapping_dict()), encoding="utf-8")
    np.testing.assert_array_equal(load_log(path, mapping).objectives[:, 1], 0.5)


def test_datetime_timestamp_column(tmp_path: Path) -> None:
    base = dt.datetime(2021, 3, 15, 14, 30)  # a Monday, 14:30 UTC
    epoch = int(base.replace(tzinfo=dt.UTC).timestamp())
    f = frame().with_columns(
        pl.from_epoch(pl.col("ts") + epoch, time_unit="s").alias("ts"))
    assert isinstance(f.schema["ts"], pl.Datetime)
    path = tmp_path / "log.parquet"
    f.write_parquet(path)
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps(mapping_dict()), encoding="utf-8")
    data = load_log(path, mapping)
    np.testing.assert_array_equal(data.time, np.array(EXP_TIME) + epoch)
    np.testing.assert_array_equal(data.user, EXP_USER)
    np.testing.assert_array_equal(data.item, EXP_ITEM)
    # hour of a@100: 14:30 + 100 s
    hour = 14.5 + 100 / 3600
    assert data.context[0, 0] == pytest.approx(math.sin(2 * math.pi * hour / 24), abs=1e-5)
    assert data.context[0, 1] == pytest.approx(math.cos(2 * math.pi * hour / 24), abs=1e-5)


def test_date_timestamp_column(tmp_path: Path) -> None:
    f = pl.DataFrame({"u": ["a", "a", "b"], "i": ["x", "y", "x"],
                      "day": [dt.date(2021, 3, 2), dt.date(2021, 3, 1), dt.date(2021, 3, 1)],
                      "p": [0.1, 0.2, 0.3], "q": [0.9, 0.8, 0.7]})
    path = tmp_path / "log.parquet"
    f.write_parquet(path)
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"columns": {"user": "u", "item": "i", "timestamp": "day"},
                                   "objectives": [{"column": "p"}, {"column": "q"}]}))
    data = load_log(path, mapping)
    mar1 = dt.datetime(2021, 3, 1, tzinfo=dt.UTC).timestamp()
    np.testing.assert_array_equal(data.time, [mar1, mar1 + 86400, mar1])
    np.testing.assert_allclose(data.objectives[:, 0], [0.2, 0.1, 0.3], atol=1e-6)
    assert data.objective_names == ("p", "q")  # name defaults to the column


def test_log_without_timestamp_uses_row_order(tmp_path: Path) -> None:
    raw = mapping_dict()
    del raw["columns"]["timestamp"]  # type: ignore[attr-defined]
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps(raw), encoding="utf-8")
    data = load_log(write_csv(tmp_path / "log.csv"), mapping)
    # a: file rows 2 (y), 3 (x); b: rows 1 (x), 4 (z); c: row 5 (y) -- file order within a user
    assert [data.item_ids[i - 1] for i in data.item] == ["y", "x", "x", "z", "y"]
    np.testing.assert_array_equal(data.user, [1, 1, 2, 2, 3])
    np.testing.assert_array_equal(data.time, [1.0, 2.0, 0.0, 3.0, 4.0])  # 0-based file rows
    assert data.context_names == ("log_gap_events", "device=mobile", "device=web")
    np.testing.assert_allclose(data.context[:, 0], np.log1p([0, 1, 0, 3, 0]), rtol=1e-6)


def test_integer_ids_round_trip(tmp_path: Path) -> None:
    f = pl.DataFrame({"u": [10, 2, 10, 2], "i": [300, 300, 40, 5], "t": [5, 6, 1, 2],
                      "p": [0.1, 0.2, 0.3, 0.4], "q": [0.5, 0.6, 0.7, 0.8]})
    path = tmp_path / "log.csv"
    f.write_csv(path)
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"columns": {"user": "u", "item": "i", "timestamp": "t"},
                                   "objectives": [{"column": "p"}, {"column": "q"}]}))
    data = load_log(path, mapping)
    assert data.user_ids == ("2", "10")  # numeric order, not string order
    assert data.item_ids == ("5", "40", "300")
    assert data.user_index(10) == 2
    assert data.user_index("10") == 2
    np.testing.assert_array_equal(data.item_indices([300, 5]), [3, 1])
    np.testing.assert_array_equal(data.user, [1, 1, 2, 2])
    np.testing.assert_array_equal(data.time, [2, 6, 1, 5])
    np.testing.assert_allclose(data.objectives[:, 0], [0.4, 0.2, 0.3, 0.1], atol=1e-6)


def test_events_sorted_by_user_then_time_random(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 300
    f = pl.DataFrame({"u": rng.integers(0, 20, n).astype(str), "i": np.arange(n).astype(str),
                      "t": rng.integers(0, 1000, n), "p": rng.random(n), "q": rng.random(n)})
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"columns": {"user": "u", "item": "i", "timestamp": "t"},
                                   "objectives": [{"column": "p"}, {"column": "q"}]}))
    f.write_parquet(tmp_path / "log.parquet")
    data = load_log(tmp_path / "log.parquet", mapping)
    key = data.user * 10_000 + data.time
    assert np.all(np.diff(key) >= 0)
    # each (item -> event) keeps its own values: compare with the raw rows by item id
    raw = {row["i"]: row for row in f.iter_rows(named=True)}
    for e in range(n):
        row = raw[data.item_ids[data.item[e] - 1]]
        assert data.user_ids[data.user[e] - 1] == row["u"]
        assert data.time[e] == row["t"]
        assert data.objectives[e, 0] == pytest.approx(row["p"], abs=1e-6)
    # ties in time within a user keep the file order (items are numbered in file order)
    for e in range(1, n):
        if data.user[e] == data.user[e - 1] and data.time[e] == data.time[e - 1]:
            assert int(data.item_ids[data.item[e] - 1]) > int(data.item_ids[data.item[e - 1] - 1])


def test_logged_candidate_values(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(TOML, encoding="utf-8")
    data = load_log(write_csv(tmp_path / "log.csv"), mapping)
    events = np.array([0, 2])  # a@100, b@100
    items = np.array([[1, 2, 3, 0], [3, 1, 2, 0]])  # a never saw z; b never saw y
    objectives, reward = data.candidate_values(events, items)
    assert objectives.shape == (2, 4, 3)
    np.testing.assert_allclose(reward[0], [0.5, 0.0, np.nan, np.nan], atol=1e-6)
    np.testing.assert_allclose(reward[1], [0.75, 1.0, np.nan, np.nan], atol=1e-6)
    np.testing.assert_allclose(objectives[0, 1], data.objectives[1], atol=1e-7)
    np.testing.assert_allclose(objectives[1, 1], data.objectives[3], atol=1e-7)
    assert np.isnan(objectives[0, 2]).all()
    assert np.isnan(objectives[:, 3]).all()


def test_one_hot_is_capped_at_max_categories(tmp_path: Path) -> None:
    from deepprl.data.encode import MAX_CATEGORIES, feature_matrix

    # category k appears k + 1 times; the 32 most frequent are kept, the rest are all-zero
    n_cats = MAX_CATEGORIES + 8
    values = [f"c{k:02d}" for k in range(n_cats) for _ in range(k + 1)]
    f = pl.DataFrame({"cat": values})
    matrix, names = feature_matrix(f, ("cat",), "mem")
    assert matrix.shape == (len(values), MAX_CATEGORIES)
    assert names == tuple(f"cat=c{k:02d}" for k in range(n_cats - 1, 7, -1))
    rare = np.array([int(v[1:]) < 8 for v in values])
    assert (matrix[rare] == 0).all()
    np.testing.assert_array_equal(matrix[~rare].sum(1), 1.0)


def test_numeric_context_is_z_scored(tmp_path: Path) -> None:
    f = frame().with_columns(pl.Series("temp", [1.0, 2.0, 3.0, 4.0, 10.0]))
    raw = mapping_dict()
    raw["columns"]["context"] = ["device", "temp"]  # type: ignore[index]
    from deepprl.data.schema import mapping_from_dict

    data = encode_log(f, mapping_from_dict(raw), source="mem", name="mem")
    assert data.context_names[-1] == "temp"
    temp = np.array([3.0, 2.0, 4.0, 1.0, 10.0])  # in (user, time) order
    np.testing.assert_allclose(data.context[:, -1], (temp - temp.mean()) / temp.std(),
                               rtol=1e-5)


# -- time context ----------------------------------------------------------------------------

def test_time_context_known_timestamps() -> None:
    monday = dt.datetime(2021, 3, 15, 14, 30, tzinfo=dt.UTC).timestamp()  # Monday 14:30
    sunday = dt.datetime(2021, 3, 14, 0, 0, tzinfo=dt.UTC).timestamp()  # Sunday 00:00
    user = np.array([1, 2, 2])
    time = np.array([monday, sunday, sunday + 2 * 3600.0])
    ctx, names = time_context(user, time, has_clock=True)
    assert names == CLOCK_CONTEXT
    assert ctx.shape == (3, 5)
    tau = 2 * math.pi
    # Monday 14:30: hour 14.5; weekday 0 (Monday) plus 14.5/24 of a day
    day = 14.5 / 24
    np.testing.assert_allclose(ctx[0], [math.sin(tau * 14.5 / 24), math.cos(tau * 14.5 / 24),
                                        math.sin(tau * day / 7), math.cos(tau * day / 7), 0.0],
                               atol=1e-5)
    # Sunday midnight: hour 0, weekday 6
    np.testing.assert_allclose(ctx[1], [0.0, 1.0, math.sin(tau * 6 / 7), math.cos(tau * 6 / 7),
                                        0.0], atol=1e-5)
    # two hours later, same user: hour 2, gap log1p(2) / 5
    day = 6 + 2 / 24
    np.testing.assert_allclose(ctx[2], [math.sin(tau * 2 / 24), math.cos(tau * 2 / 24),
                                        math.sin(tau * day / 7), math.cos(tau * day / 7),
                                        math.log1p(2.0) / 5], atol=1e-5)


def test_time_context_gap_restarts_per_user_without_clock() -> None:
    user = np.array([1, 1, 1, 2, 2])
    time = np.array([0.0, 1.0, 4.0, 5.0, 9.0])
    ctx, names = time_context(user, time, has_clock=False)
    assert names == ("log_gap_events",)
    np.testing.assert_allclose(ctx[:, 0], np.log1p([0, 1, 3, 0, 4]), rtol=1e-6)


def test_encode_log_direct_frame_source_in_errors() -> None:
    from deepprl.data.schema import DataError, mapping_from_dict

    mapping = mapping_from_dict(mapping_dict())
    with pytest.raises(DataError, match=r"^in-memory: column 'rel'"):
        encode_log(frame().drop("rel"), mapping, source="in-memory", name="m")


# -- MovieLens-100K --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ml() -> Interactions:
    return load_movielens_100k()


@pytest.fixture(scope="module")
def ml_raw() -> dict[str, pl.DataFrame]:
    root = bundled_dir()
    return {name: pl.read_parquet(root / f"{name}.parquet")
            for name in ("data", "items", "users")}


def test_movielens_sizes(ml: Interactions) -> None:
    assert ml.name == "movielens-100k"
    assert ml.n_events == 100_000
    assert ml.n_users == 943
    assert ml.n_items == 1682
    assert ml.objective_names == ("consistency", "recency")
    assert ml.objectives.shape == (100_000, 2)
    assert ml.user.min() == 1
    assert ml.user.max() == 943
    assert ml.item.min() == 1
    assert ml.item.max() == 1682
    assert np.all(np.diff(ml.user) >= 0)
    same = ml.user[1:] == ml.user[:-1]
    assert np.all(np.diff(ml.time)[same] >= 0)
    assert ml.user_features.shape[0] == 944
    assert ml.item_features.shape[0] == 1683
    assert ml.context_names[:5] == CLOCK_CONTEXT


def test_movielens_objectives_in_unit_interval(ml: Interactions) -> None:
    assert np.isfinite(ml.objectives).all()
    assert ml.objectives.min() >= 0.0
    assert ml.objectives.max() <= 1.0
    # both objectives actually vary
    assert ml.objectives[:, 0].std() > 0.1
    assert ml.objectives[:, 1].std() > 0.01


def test_movielens_reward_is_rating_over_five(ml: Interactions, ml_raw: dict[str, pl.DataFrame]
                                              ) -> None:
    ratings = ml_raw["data"]
    lookup = {(str(u), str(i)): r for u, i, r in ratings.select(
        "user_id", "movie_id", "rating").iter_rows()}
    assert len(lookup) == 100_000  # (user, item) pairs are unique in ML-100K
    users = np.array(ml.user_ids)[ml.user - 1]
    items = np.array(ml.item_ids)[ml.item - 1]
    expected = np.array([lookup[(u, i)] for u, i in zip(users, items, strict=True)]) / 5.0
    np.testing.assert_allclose(ml.reward, expected, atol=1e-6)
    assert set(np.unique(np.round(ml.reward * 5, 4))) == {1.0, 2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize("user_id", ["1", "42", "943"])
def test_movielens_consistency_is_genre_jaccard_with_previous(
        ml: Interactions, ml_raw: dict[str, pl.DataFrame], user_id: str) -> None:
    items = ml_raw["items"]
    genres = {int(row["movie_id"]): {g for g in GENRES if row[g] == 1}
              for row in items.iter_rows(named=True)}
    raw = ml_raw["data"].with_row_index("order").filter(pl.col("user_id") == int(user_id))
    history = sorted(raw.iter_rows(named=True), key=lambda r: (r["timestamp"], r["order"]))
    events = ml.user_events(ml.user_index(user_id))
    assert len(events) == len(history)
    prev: set[str] | None = None
    for event, row in zip(events, history, strict=True):
        assert ml.item_ids[ml.item[event] - 1] == str(row["movie_id"])
        g = genres[row["movie_id"]]
        expected = 0.0 if prev is None else (len(g & prev) / len(g | prev) if g | prev else 0.0)
        assert ml.objectives[event, 0] == pytest.approx(expected, abs=1e-6)
        prev = g


def test_movielens_hand_checked_consistency(ml: Interactions) -> None:
    # User 1's first events: 168 Monty Python and the Holy Grail (Comedy) and 172 The Empire
    # Strikes Back (Action, Adventure, Drama, Romance, Sci-Fi, War), both at 874965478 (file
    # order kept), then 165 Jean de Florette (Drama), then 156 Reservoir Dogs (Crime, Thriller).
    events = ml.user_events(ml.user_index("1"))[:4]
    assert [ml.item_ids[i - 1] for i in ml.item[events]] == ["168", "172", "165", "156"]
    np.testing.assert_array_equal(ml.time[events], [874965478, 874965478, 874965518, 874965556])
    # first event: no previous item -> 0; Comedy vs 6 others -> 0; Drama within the 6 -> 1/6;
    # Crime, Thriller vs Drama -> 0
    np.testing.assert_allclose(ml.objectives[events, 0], [0.0, 0.0, 1 / 6, 0.0], atol=1e-6)


def test_movielens_recency(ml: Interactions, ml_raw: dict[str, pl.DataFrame]) -> None:
    items = ml_raw["items"]
    release = {}
    for row in items.iter_rows(named=True):
        if row["release_date"]:
            d = dt.datetime.strptime(row["release_date"], "%d-%b-%Y").replace(tzinfo=dt.UTC)
            release[str(row["movie_id"])] = d.timestamp()
    rng = np.random.default_rng(0)
    checked = 0
    for event in rng.choice(ml.n_events, size=200, replace=False):
        item = ml.item_ids[ml.item[event] - 1]
        if item not in release:
            continue
        age_days = max(ml.time[event] - release[item], 0.0) / 86400.0
        assert ml.objectives[event, 1] == pytest.approx(math.exp(-age_days / 365.0), abs=1e-5)
        checked += 1
    assert checked > 150


def test_movielens_candidate_values_reproduce_logged(ml: Interactions) -> None:
    rng = np.random.default_rng(1)
    events = rng.choice(ml.n_events, size=500, replace=False)
    objectives, reward = ml.candidate_values(events, ml.item[events][:, None])
    np.testing.assert_allclose(objectives[:, 0, :], ml.objectives[events], atol=1e-6)
    np.testing.assert_allclose(reward[:, 0], ml.reward[events], atol=1e-6)


def test_movielens_candidate_values_unrated_item(ml: Interactions) -> None:
    u = ml.user_index("1")
    events = ml.user_events(u)
    seen = set(ml.item[events].tolist())
    unseen = next(i for i in range(1, ml.n_items + 1) if i not in seen)
    e = events[5]
    objectives, reward = ml.candidate_values(np.array([e]), np.array([[unseen, 0]]))
    assert np.isnan(reward).all()  # never rated: no reward, but objectives are defined
    assert np.isfinite(objectives[0, 0]).all()
    assert np.isnan(objectives[0, 1]).all()  # padding
    assert 0.0 <= objectives[0, 0, 0] <= 1.0
    assert 0.0 <= objectives[0, 0, 1] <= 1.0


def test_movielens_user_features(ml: Interactions, ml_raw: dict[str, pl.DataFrame]) -> None:
    names = ml.user_feature_names
    assert names[0] == "age"
    assert "gender=M" in names
    assert "gender=F" in names
    users = {str(r["user_id"]): r for r in ml_raw["users"].iter_rows(named=True)}
    gm, gf = names.index("gender=M"), names.index("gender=F")
    for raw_id in ("1", "2", "500"):
        row = ml.user_features[ml.user_index(raw_id)]
        assert row[gm] == float(users[raw_id]["gender"] == "M")
        assert row[gf] == float(users[raw_id]["gender"] == "F")
        occ = f"occupation={users[raw_id]['occupation']}"
        assert row[names.index(occ)] == 1.0
    np.testing.assert_array_equal(ml.user_features[0], 0.0)
