"""`deepprl evaluate` at speed: a run keeps its evaluation sets' predictions
(artifacts.SCORED_FILE), and a logged log's padded candidate sets are valued pair by pair.
Both must give what the full computation gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepprl.artifacts import SCORED_FILE, load_run, run_split
from deepprl.cli.common import run_config
from deepprl.data.interactions import LoggedValuer
from deepprl.data.movielens import TimedGenreValuer, jaccard
from deepprl.data.sequences import candidate_items
from deepprl.eval.offline import METHODS, evaluate_ranker, evaluate_run
from deepprl.io import numbers_of
from deepprl.recommender import Recommender
from deepprl.train.run import train_run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run of the README example (a logged log: candidate sets of unequal size)."""
    config = run_config(None, EXAMPLES / "log.csv", EXAMPLES / "mapping.toml", 0, 1, 20, None)
    out = tmp_path_factory.mktemp("cache") / "run"
    train_run(config, out)
    return out




def test_evaluation_reads_the_stored_predictions(run: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every method of evaluate_ranker runs without a forward pass of the predictor on the
    stored sets, and gives what recomputing them gives."""
    config, recommender = load_run(run)
    assert isinstance(recommender, Recommender) and (run / SCORED_FILE).is_file()
    assert len(recommender.remembered()) == 8  # the test and the validation set

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stored predictions were not used")

    with monkeypatch.context() as patch:
        patch.setattr(Recommender, "score_events", no_forward)
        stored = evaluate_ranker(recommender, config)
        cli = evaluate_run(run, "static")
    assert set(METHODS) <= set(stored)
    recommender.remember({})  # forget them: the predictor scores both sets again
    recomputed = evaluate_ranker(recommender, config)
    assert json.dumps(sorted(stored)) == json.dumps(sorted(recomputed))
    assert numbers_of(stored) == pytest.approx(numbers_of(recomputed), rel=1e-6, abs=1e-7)
    assert cli["objectives"] == pytest.approx(stored["static"]["objectives"], rel=1e-6)


def test_padded_candidates_are_valued_pair_by_pair(run: Path) -> None:
    """candidate_values on padded rows equals the valuer on the whole padded array."""
    config, recommender = load_run(run)
    data = recommender.data
    split = run_split(data, config)
    events = np.flatnonzero(split.test)
    items = candidate_items(data, events, split.test)
    assert (items == 0).any() and (items > 0).any()  # unequal sets: the pairwise path
    objectives, reward = data.candidate_values(events, items)
    valuer = data.valuer if data.valuer is not None else LoggedValuer()
    whole_objectives, whole_reward = valuer.values(data, events, items)
    assert np.array_equal(objectives, whole_objectives, equal_nan=True)
    assert np.array_equal(reward, whole_reward, equal_nan=True)
    assert np.isnan(reward[items == 0]).all() and np.isfinite(reward[items > 0]).any()


def test_genre_consistency_by_bits_equals_jaccard() -> None:
    """TimedGenreValuer's popcount Jaccard is jaccard() to the bit, item 0 (no genre) too."""
    rng = np.random.default_rng(0)
    genres = (rng.random((50, 19)) < 0.2).astype(np.float32)
    genres[0] = 0.0
    valuer = TimedGenreValuer(genres=genres, release_ts=np.zeros(50), tau_days=30.0)
    assert valuer.genre_bits is not None
    items, prev = rng.integers(0, 50, size=(200, 30)), rng.integers(0, 50, size=200)
    expected = jaccard(genres[items], genres[prev][:, None, :])
    got = valuer.consistency(items, prev)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert (got > 0).any() and (got == 0).any()
