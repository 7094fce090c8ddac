"""Yelp HIN: relevance and novelty against a set-based reference, the seeded order, the user
sample, and the real files (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from deepprl.data.interactions import Interactions
from deepprl.data.schema import DataError
from deepprl.data.yelp import CategoryValuer, load_yelp

REAL = SHARED_DATA / "yelp-hin"
needs_real = pytest.mark.needs_data("yelp-hin/user_business.dat")  # see conftest

CATEGORIES = {10: {1, 2}, 11: {3}, 12: {2, 3}, 13: set(), 14: {4}, 15: {1}}
CITIES = {10: 100, 11: 100, 12: 200, 13: 200, 15: 300}  # 14 has no city
LOG = [(1, 10, 5), (1, 11, 4), (1, 12, 3), (1, 13, 2), (1, 14, 1), (1, 15, 5),
       (2, 12, 4), (2, 14, 2), (2, 10, 3), (3, 11, 1)]


def write_tiny(root: Path, log: list[tuple[int, int, int]] = LOG) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{u}\t{b}\t{s}\n" for u, b, s in log)
    (root / "user_business.dat").write_text(rows, encoding="utf-8")
    pairs = "".join(f"{b}\t{c}\t1\n" for b, cats in CATEGORIES.items() for c in sorted(cats))
    (root / "business_category.dat").write_text(pairs, encoding="utf-8")
    cities = "".join(f"{b}\t{c}\t1\n" for b, c in CITIES.items())
    (root / "business_city.dat").write_text(cities, encoding="utf-8")
    return root


def reference(history: list[int], candidate: int) -> tuple[float, float]:
    """(relevance, novelty) of `candidate` after the user's earlier businesses `history`."""
    cats = CATEGORIES[candidate]
    relevance = float(bool(history) and bool(cats & CATEGORIES[history[-1]]))
    earlier = set().union(*(CATEGORIES[b] for b in history))
    return relevance, float(bool(cats) and not cats & earlier)


def sequences(data: Interactions) -> dict[str, list[int]]:
    return {u: [int(data.item_ids[i - 1]) for i in data.item[data.user_events(data.user_index(u))]]
            for u in data.user_ids}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("yelp"))


def test_valuer_by_hand() -> None:
    # user 1 visits 10 {1,2}, 11 {3}, 12 {2,3}, 13 {}, 15 {1}; user 2 visits 14 {4}
    table = np.array([[-1, -1], [1, 2], [3, -1], [2, 3], [-1, -1], [4, -1], [1, -1]])
    user = np.array([1, 1, 1, 1, 1, 2])
    item = np.array([1, 2, 3, 4, 6, 5])
    valuer = CategoryValuer(categories=table, user=user, item=item)
    logged = valuer.objectives(user, item, np.arange(6), item[:, None])[:, 0]
    # relevance: first 0; {3} vs {1,2} 0; {2,3} vs {3} 1; {} 0; {1} vs {} 0; user 2 first 0
    # novelty:   first 1; {3} new 1; {2,3} seen 0; {} 0; {1} seen 0; user 2 first 1
    np.testing.assert_array_equal(logged, [[0, 1], [0, 1], [1, 0], [0, 0], [0, 0], [0, 1]])
    # at user 1's third event (after 10 and 11): 14 {4} is new, 15 {1} was seen at 10
    at = valuer.objectives(user, item, np.array([2]), np.array([[5, 6, 0]]))[0]
    np.testing.assert_array_equal(at, [[0, 1], [0, 0], [0, 0]])


def test_objectives_match_the_set_reference(tiny: Path) -> None:
    data = load_yelp(tiny, seed=0)
    assert (data.n_events, data.n_users, data.n_items) == (10, 3, 6)
    assert data.objective_names == ("relevance", "novelty")
    for user, seq in sequences(data).items():
        events = data.user_events(data.user_index(user))
        np.testing.assert_array_equal(data.time[events], np.arange(len(seq)))  # position
        for k, (event, business) in enumerate(zip(events, seq, strict=True)):
            assert tuple(data.objectives[event]) == reference(seq[:k], business)
            # every business valued at this event, against the same reference
            items = np.arange(1, data.n_items + 1)[None, :]
            values, reward = data.candidate_values(np.array([event]), items)
            expected = [reference(seq[:k], int(b)) for b in data.item_ids]
            np.testing.assert_array_equal(values[0], expected)
            rated = [int(b) in seq for b in data.item_ids]
            assert (np.isfinite(reward[0]) == rated).all()
    stars = {(str(u), str(b)): s for u, b, s in LOG}
    got = [stars[(data.user_ids[u - 1], data.item_ids[i - 1])] / 5
           for u, i in zip(data.user, data.item, strict=True)]
    np.testing.assert_allclose(data.reward, got, atol=1e-6)


def test_rating_objective_is_the_stars_and_keeps_the_paper_pair(tiny: Path) -> None:
    paper = load_yelp(tiny, seed=0)
    three = load_yelp(tiny, seed=0, objectives="rating,relevance,novelty")
    assert three.objective_names == ("rating", "relevance", "novelty")
    np.testing.assert_allclose(three.objectives[:, 0], three.reward)  # stars / 5
    np.testing.assert_array_equal(three.objectives[:, 1:], paper.objectives)
    items = np.arange(1, three.n_items + 1)[None, :]
    got, reward = three.candidate_values(np.array([3]), items)
    want, _ = paper.candidate_values(np.array([3]), items)
    np.testing.assert_array_equal(got[..., 1:], want)
    np.testing.assert_array_equal(got[..., 0], reward)  # NaN where never rated, as the reward


def test_order_is_a_seeded_permutation_within_users(tiny: Path) -> None:
    first, again, other = (sequences(load_yelp(tiny, seed=s)) for s in (0, 0, 1))
    assert first == again
    assert first != other
    for user, seq in other.items():  # same events, another order
        assert sorted(seq) == sorted(first[user])
    orders = {tuple(sequences(load_yelp(tiny, seed=s))["1"]) for s in range(8)}
    assert len(orders) > 4  # six events: the order really varies with the seed


def test_users_sample_is_nested_and_keeps_each_users_order(tiny: Path) -> None:
    full = sequences(load_yelp(tiny, seed=2))
    one, two = (sequences(load_yelp(tiny, seed=2, users=n)) for n in (1, 2))
    assert set(one) < set(two) < set(full)
    for user, seq in two.items():
        assert seq == full[user]
    with pytest.raises(ValueError, match=r"users must be in \[1, 3\]"):
        load_yelp(tiny, users=4)


def test_features_and_context(tiny: Path) -> None:
    data = load_yelp(tiny)
    names = data.item_feature_names
    # categories by number of businesses: 1, 2, 3 (two each), 4 (one); then other; then city
    assert names[:5] == ("category=1", "category=2", "category=3", "category=4",
                         "category=other")
    assert {n for n in names if n.startswith("city=")} >= {"city=100", "city=200", "city=300"}
    assert data.context_names == ("log_gap_events",)
    assert data.user_features.shape == (4, 0)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    root = write_tiny(tmp_path / "y")
    (root / "business_city.dat").write_text("1\t2\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected 3 tab-separated columns, found 2"):
        load_yelp(root)
    (root / "business_city.dat").unlink()
    with pytest.raises(DataError, match=r"missing business_city\.dat"):
        load_yelp(root)


@pytest.fixture(scope="module")
def real() -> Interactions:
    return load_yelp(REAL, users=3000)


@needs_real
def test_real_sample(real: Interactions) -> None:
    assert real.n_users == 3000
    assert real.objectives.min() >= 0 and real.objectives.max() <= 1
    relevance, novelty = real.objectives.T
    assert not ((relevance == 1) & (novelty == 1)).any()  # novel excludes relevant
    assert np.corrcoef(relevance, novelty)[0, 1] < -0.3  # paper: -0.596 on its Yelp
    assert set(np.unique(np.round(real.reward * 5))) == {1, 2, 3, 4, 5}


@needs_real
def test_real_sizes() -> None:
    data = load_yelp(REAL)
    assert (data.n_events, data.n_users, data.n_items) == (198_397, 16_239, 14_284)


def test_cli_trains_and_evaluates_end_to_end(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepprl.cli import app

    rng = np.random.default_rng(0)
    root = tmp_path / "yelp"
    root.mkdir()
    rows = [f"{u}\t{b}\t{rng.integers(1, 6)}\n" for u in range(1, 31)
            for b in rng.choice(60, size=int(rng.integers(40, 50)), replace=False)]
    (root / "user_business.dat").write_text("".join(rows), encoding="utf-8")
    pairs = [f"{b}\t{c}\t1\n" for b in range(60)
             for c in rng.choice(8, size=int(rng.integers(1, 3)), replace=False)]
    (root / "business_category.dat").write_text("".join(pairs), encoding="utf-8")
    (root / "business_city.dat").write_text("".join(f"{b}\t{b % 4}\t1\n" for b in range(60)),
                                            encoding="utf-8")
    runner, out = CliRunner(), tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--dataset", "yelp-hin", "--dataset-option", f"path={root}",
        "--dataset-option", "users=20", "--out", str(out), "--epochs", "1", "--k", "3",
        "--set", "policy.steps=50", "--quiet"])
    assert result.exit_code == 0, result.output
    evaluated = runner.invoke(app, ["evaluate", "--run", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert set(metrics["objectives"]) == {"relevance", "novelty"}
    assert all(0.0 <= v <= 1.0 for v in metrics["objectives"].values())
