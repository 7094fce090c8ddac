"""Dataset options declared per dataset and checked by dataset_spec; where data folders are
looked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deepprl.data import locate
from deepprl.data.locate import ENV_VAR, find_data_dir
from deepprl.data.registry import DATASETS, dataset_spec
from deepprl.data.schema import DataError


@pytest.mark.parametrize(("name", "options", "message"), [
    ("yelp-hin", {"subset": 1}, "yelp-hin: unknown option 'subset'; expected one of "
                                "['objectives', 'path', 'seed', 'users']"),
    ("yelp-hin", {"users": 0}, "option 'users' must be >= 1, got 0"),
    ("yelp-hin", {"users": "many"}, "option 'users' must be int"),
    ("yelp-hin", {"seed": 1.5}, "option 'seed' must be int"),
    ("yelp-hin", {"seed": True}, "option 'seed' must be int"),
    ("movielens-latest-small", {"subset": 4}, "option 'subset' must be one of [1, 2, 3], "
                                              "got 4"),
    ("movielens-latest-small", {"users": 5}, "unknown option 'users'"),
    ("movielens-100k", {"seed": 1}, "movielens-100k: unknown option 'seed'; expected one of "
                                    "['objectives', 'path']"),
    ("movielens-100k", {"objectives": "relevance"}, "movielens-100k: option 'objectives' "
                                                    "needs at least two objectives"),
    ("movielens-sim", {"objectives": "relevance,rating"}, "unknown objective 'rating'"),
    ("yelp-hin", {"objectives": "relevance,relevance"}, "names an objective twice"),
    ("movielens-latest-small", {"objectives": 3}, "unknown objective '3'"),
    ("simulator", {"n_userz": 3}, "simulator: unknown option 'n_userz'"),
])
def test_bad_options_are_named(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        dataset_spec(name, options=options)
    assert message in str(caught.value)


def test_good_options_are_kept_and_paths_made_absolute(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = dataset_spec("movielens-latest-small",
                        options={"path": "ml", "subset": 3, "seed": 7})
    assert spec == {"name": "movielens-latest-small", "path": str(tmp_path / "ml"),
                    "subset": 3, "seed": 7}
    assert dataset_spec("yelp-hin", options={"path": 2024, "users": 10})["path"] == str(
        tmp_path / "2024")  # a folder named by a number (the CLI parses values as JSON)
    assert dataset_spec("yelp-hin") == {"name": "yelp-hin"}
    assert dataset_spec("simulator", options={"n_users": 5}) == {"name": "simulator",
                                                                 "n_users": 5}


def test_every_dataset_is_described() -> None:
    assert {"simulator", "movielens-100k", "movielens-latest-small", "yelp-hin"} <= set(DATASETS)
    for entry in DATASETS.values():
        assert entry.description
        assert all(option.help for option in entry.options.values())


def test_explicit_path_missing_a_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing b\.csv \(dataset option path\)"):
        find_data_dir("thing", ("a.csv", "b.csv"), tmp_path)
    assert find_data_dir("thing", ("a.csv",), tmp_path) == tmp_path


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, work = tmp_path / "env", tmp_path / "repo" / "work"
    for folder in (env / "thing", tmp_path / "repo" / "shared" / "data" / "thing"):
        folder.mkdir(parents=True)
        (folder / "a.csv").write_text("x\n", encoding="utf-8")
    work.mkdir()
    monkeypatch.chdir(work)  # ../shared/data/thing exists from here
    monkeypatch.setenv(ENV_VAR, str(env))
    assert find_data_dir("thing", ("a.csv",)) == env / "thing"
    monkeypatch.delenv(ENV_VAR)
    assert find_data_dir("thing", ("a.csv",)).resolve() == (
        tmp_path / "repo" / "shared" / "data" / "thing")


def test_not_found_names_every_place_tried(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    places = locate.candidate_dirs("no-such-data")
    assert places[0] == tmp_path / "env" / "no-such-data"
    assert places[1] == tmp_path / ".." / "shared" / "data" / "no-such-data"
    with pytest.raises(DataError) as caught:
        find_data_dir("no-such-data", ("a.csv",))
    message = str(caught.value)
    assert all(str(p) in message for p in places)
    assert "path=DIR" in message and ENV_VAR in message


def test_objectives_option_picks_a_subset_in_the_order_given() -> None:
    from deepprl.data.registry import load_dataset

    spec = dataset_spec("movielens-100k", options={"objectives": "relevance, consistency,recency"})
    assert spec["objectives"] == "relevance,consistency,recency"  # saved normalised
    three, paper = load_dataset(spec), load_dataset(dataset_spec("movielens-100k"))
    assert paper.objective_names == ("consistency", "recency")
    assert three.objective_names == ("relevance", "consistency", "recency")
    np.testing.assert_allclose(three.objectives[:, 0], three.reward)  # relevance = rating / 5
    np.testing.assert_array_equal(three.objectives[:, 1:], paper.objectives)
    # the valuer answers candidates in the same order, NaN for a movie the user never rated
    events = np.arange(0, 400, 40)
    items = np.stack([three.item[events], np.roll(three.item[events], 1),
                      np.zeros_like(events)], axis=1)
    got, reward = three.candidate_values(events, items)
    want, _ = paper.candidate_values(events, items)
    assert got.shape == (len(events), 3, 3)
    np.testing.assert_allclose(got[..., 0], reward)
    np.testing.assert_allclose(got[..., 0, 0], three.reward[events])
    np.testing.assert_array_equal(got[..., :2, 1:], want[..., :2, :])
    assert np.isnan(got[:, 2]).all()  # padding


def test_movielens_sim_relevance_is_the_calibrated_rating_of_any_item() -> None:
    from deepprl.data.registry import load_dataset

    data = load_dataset(dataset_spec("movielens-sim",
                                     options={"objectives": "recency,relevance"}))
    assert data.objective_names == ("recency", "relevance")
    np.testing.assert_allclose(data.objectives[:, 1], data.reward)
    events = np.arange(0, 1000, 100)
    items = np.tile(np.arange(1, 21), (len(events), 1))  # movies mostly never rated
    got, reward = data.candidate_values(events, items)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got[..., 1], reward)
