"""MovieLens latest-small: objectives on hand-made files, sparsity subsets, the real files."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import SHARED_DATA
from deepprl.data.interactions import Interactions
from deepprl.data.movielens_latest import (
    load_movielens_latest,
    release_timestamps,
    subset_ratings,
    subset_statistics,
    subset_users,
)
from deepprl.data.schema import DataError

REAL = SHARED_DATA / "movielens-latest-small"
needs_real = pytest.mark.needs_data("movielens-latest-small/ratings.csv")  # see conftest
DAY = 86400.0


def july(year: int) -> float:
    return dt.datetime(year, 7, 1, tzinfo=dt.UTC).timestamp()


MOVIES = """movieId,title,genres
1,Alpha (1995),Comedy|Drama
2,"Beta, The (2000)",Drama
3,Gamma,Action|Comedy
4,Delta: Desu (2006\u20132007),(no genres listed)
"""
T0 = july(2000)
# (user, movie, rating, time); file order differs from time order; user 7 has a tie at T0+20d
RATINGS = [
    (7, 2, 3.5, T0 + 20 * DAY),
    (7, 1, 4.0, T0 + 10 * DAY),
    (7, 3, 0.5, T0 + 20 * DAY),
    (7, 4, 5.0, T0 + 30 * DAY),
    (9, 3, 2.0, T0 + 5 * DAY),
    (9, 1, 3.0, T0 + 400 * DAY),
]


def write_tiny(root: Path, ratings: list[tuple[int, int, float, float]] = RATINGS,
               movies: str = MOVIES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "movies.csv").write_text(movies, encoding="utf-8")
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{m},{r},{int(t)}" for u, m, r, t in ratings]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_release_date_is_first_of_july_of_the_titles_year() -> None:
    titles = pl.Series(["A (1995)", "B (2006\u20132007)", "C", "D (1999) ", "E (in 3D) (2012)"])
    got = release_timestamps(titles).to_list()
    assert got == [july(1995), july(2006), None, july(1999), july(2012)]


def test_tiny_log_objectives_by_hand(tmp_path: Path) -> None:
    data = load_movielens_latest(write_tiny(tmp_path / "ml"))
    assert (data.n_events, data.n_users, data.n_items) == (6, 2, 4)
    assert data.name == "movielens-latest-small"
    assert data.objective_names == ("consistency", "recency")
    # user 7 in time order: Alpha@10d, Beta@20d, Gamma@20d (tie: file order), Delta@30d
    order = [data.item_ids[i - 1] for i in data.item]
    assert order == ["1", "2", "3", "4", "3", "1"]
    # Alpha {Comedy, Drama}; Beta {Drama}: 1/2; Gamma {Action, Comedy} vs Beta: 0;
    # Delta {} vs Gamma: 0; user 9: first event 0, Alpha vs Gamma {Comedy}: 1/3
    np.testing.assert_allclose(data.objectives[:, 0], [0, 0.5, 0, 0, 0, 1 / 3], atol=1e-6)
    # recency: Alpha out 1 July 1995, Beta 1 July 2000, Gamma has no year -> its first
    # rating (user 9 at T0 + 5 d), Delta 1 July 2006 (after the rating: age 0)
    ages = [T0 + 10 * DAY - july(1995), 20 * DAY, 15 * DAY, 0.0, 0.0,
            T0 + 400 * DAY - july(1995)]
    np.testing.assert_allclose(data.objectives[:, 1], [math.exp(-a / DAY / 365) for a in ages],
                               rtol=1e-5)
    np.testing.assert_allclose(data.reward, [0.8, 0.7, 0.1, 1.0, 0.4, 0.6], atol=1e-6)
    three = load_movielens_latest(tmp_path / "ml", objectives=("recency", "relevance",
                                                               "consistency"))
    np.testing.assert_allclose(three.objectives, np.c_[data.objectives[:, 1], data.reward,
                                                       data.objectives[:, 0]], atol=1e-6)
    assert data.item_feature_names == ("genre=Action", "genre=Comedy", "genre=Drama",
                                       "release_year")
    genres = data.item_features[:, :3]
    # no genre listed: the lowest (raw 0) value of every genre column
    np.testing.assert_allclose(genres[data.item_index(4)], genres[1:].min(axis=0))
    assert genres[data.item_index(1)][1] > 0 and genres[data.item_index(1)][0] < 0  # z-scored
    assert data.user_features.shape == (3, 0)
    assert data.context.shape == (6, 5)


def test_tiny_log_candidate_values_match_logged(tmp_path: Path) -> None:
    data = load_movielens_latest(write_tiny(tmp_path / "ml"))
    events = np.arange(data.n_events)
    objectives, reward = data.candidate_values(events, data.item[:, None])
    np.testing.assert_allclose(objectives[:, 0], data.objectives, atol=1e-6)
    np.testing.assert_allclose(reward[:, 0], data.reward, atol=1e-6)
    # user 9 never rated Beta: objectives defined (Beta vs Gamma: 0), reward unknown
    objectives, reward = data.candidate_values(np.array([5]), np.array([[data.item_index(2)]]))
    assert objectives[0, 0, 0] == 0.0 and np.isnan(reward[0, 0])


def test_a_rated_movie_missing_from_movies_is_an_error(tmp_path: Path) -> None:
    root = write_tiny(tmp_path / "ml", ratings=[*RATINGS, (9, 99, 3.0, T0)])
    with pytest.raises(DataError, match=r"movieId 99 is not in movies\.csv"):
        load_movielens_latest(root)


def test_missing_column_is_an_error(tmp_path: Path) -> None:
    root = write_tiny(tmp_path / "ml", movies=MOVIES.replace("genres", "genre", 1))
    with pytest.raises(DataError, match="missing column 'genres'"):
        load_movielens_latest(root)


def many_users(root: Path, n_users: int = 60, seed: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    movies = ["movieId,title,genres"] + [f"{m},M{m} (19{50 + m % 40}),Drama|Comedy"
                                         for m in range(1, 201)]
    ratings = [(u, int(m), 3.0, T0 + k * DAY) for u in range(1, n_users + 1)
               for k, m in enumerate(rng.choice(200, size=int(rng.integers(20, 40)),
                                                replace=False) + 1)]
    return write_tiny(root, ratings=ratings, movies="\n".join(movies) + "\n")


def test_subsets_are_nested_seeded_and_loaded_as_counted(tmp_path: Path) -> None:
    root = many_users(tmp_path / "ml")
    users = np.arange(1, 61)
    picked = {s: set(subset_users(users, s, seed=3).tolist()) for s in (1, 2, 3)}
    assert [len(picked[s]) for s in (1, 2, 3)] == [60, 20, 7]
    assert picked[3] < picked[2] < picked[1]
    assert picked[2] == set(subset_users(users[::-1], 2, seed=3).tolist())  # row order moot
    assert picked[2] != set(subset_users(users, 2, seed=4).tolist())
    stats = subset_statistics(root, seed=3)
    assert stats["subset"].to_list() == [1, 2, 3]
    for row in stats.iter_rows(named=True):
        data = load_movielens_latest(root, subset=row["subset"], seed=3)
        assert (data.n_events, data.n_users, data.n_items) == (row["records"], row["users"],
                                                               row["items"])
        assert {int(u) for u in data.user_ids} == picked[row["subset"]]
        expected = 100 * row["records"] / (row["users"] * row["items"])
        assert row["sparsity_pct"] == pytest.approx(expected)
    assert load_movielens_latest(root, subset=3, seed=3).name == "movielens-latest-small-3"
    with pytest.raises(ValueError, match="subset must be one of"):
        subset_users(users, 4, seed=0)


def test_subset_keeps_every_rating_of_its_users(tmp_path: Path) -> None:
    ratings = pl.read_csv(many_users(tmp_path / "ml") / "ratings.csv")
    part = subset_ratings(ratings, 2, seed=0)
    kept = part["userId"].unique()
    assert part.height == ratings.filter(pl.col("userId").is_in(kept.implode())).height


# -- the real files (skipped where ../shared/data is absent) -----------------------------------

@pytest.fixture(scope="module")
def real() -> Interactions:
    return load_movielens_latest(REAL)


@needs_real
def test_real_sizes_and_objectives(real: Interactions) -> None:
    assert (real.n_events, real.n_users, real.n_items) == (100_836, 610, 9_724)
    assert np.isfinite(real.objectives).all()
    assert real.objectives.min() >= 0.0 and real.objectives.max() <= 1.0
    assert real.objectives[:, 0].std() > 0.1 and real.objectives[:, 1].std() > 0.01
    assert set(np.unique(np.round(real.reward * 10))) == set(range(1, 11))  # 0.5 .. 5 stars
    assert len(real.item_feature_names) == 20  # 19 genres + release year


@needs_real
def test_real_subsets_mirror_table_9() -> None:
    stats = subset_statistics(REAL, seed=0)
    assert stats.row(0, named=True)["records"] == 100_836  # subset 1: the whole log
    for column in ("records", "users", "items"):
        assert stats[column].is_sorted(descending=True) and stats[column].n_unique() == 3
    assert stats["sparsity_pct"].is_sorted() and stats["sparsity_pct"].n_unique() == 3
    assert stats.row(2, named=True)["users"] == 68


def test_cli_trains_and_evaluates_end_to_end(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepprl.cli import app

    runner, out = CliRunner(), tmp_path / "run"
    root = many_users(tmp_path / "ml")
    result = runner.invoke(app, [
        "train", "--dataset", "movielens-latest-small", "--dataset-option", f"path={root}",
        "--dataset-option", "subset=2", "--out", str(out), "--epochs", "1", "--k", "3",
        "--set", "policy.steps=50", "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == {"name": "movielens-latest-small", "path": str(root.resolve()),
                                 "subset": 2}
    evaluated = runner.invoke(app, ["evaluate", "--run", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert set(metrics["objectives"]) == {"consistency", "recency"}
    assert all(0.0 <= v <= 1.0 for v in metrics["objectives"].values())
    assert 0.0 <= metrics["reward"] <= 1.0
