"""Conformance of every registered model (deepprl models): the same checks for each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_gradients, double
from deepprl.artifacts import load_run
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.eval.offline import evaluate_run
from deepprl.recommender import ItemRanker, Recommender
from deepprl.train.run import train_run
from deepprl.zoo import configure, models

TINY = {"name": "simulator", "n_users": 12, "n_items": 16, "events_per_user": 14}
NAMES = sorted(models())


def tiny_config(name: str, seed: int = 0) -> RunConfig:
    base = RunConfig(dataset=dict(TINY), seed=seed, train=TrainConfig(epochs=1),
                     policy=PolicyConfig(steps=20, batch_size=32, static_trials=5),
                     eval=EvalConfig(k=3))
    return configure(name, base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("zoo")
    return {name: (root / name, train_run(tiny_config(name), root / name)) for name in NAMES}


def _probe(ranker: Recommender | ItemRanker) -> tuple[np.ndarray, np.ndarray]:
    data = ranker.data
    events = np.arange(0, data.n_events, 7)
    items = np.tile(np.arange(1, data.n_items + 1), (len(events), 1))
    return events, items


@pytest.mark.parametrize("name", NAMES)
def test_trains_and_evaluates_with_the_shared_protocol(
        trained: dict[str, tuple[Path, dict]], name: str) -> None:
    run, metrics = trained[name]
    assert metrics["model"] == name
    for method in ("learned", "popularity", "oracle"):
        assert set(metrics[method]["objectives"]) == {"o1", "o2"}
        assert np.isfinite(metrics[method]["reward"])
    assert metrics["oracle"]["reward"] >= metrics["learned"]["reward"] - 1e-6
    result = evaluate_run(run)
    static = models()[name].item_policy is None and tiny_config(name).policy.algorithm == "static"
    own = "static" if static else "learned"  # a static-weight model's ranking says so
    assert result["model"] == name and result["k"] == 3 and result["weights"] == own
    assert result["reward"] == pytest.approx(metrics["learned"]["reward"], abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_and_save_load_identity(
        trained: dict[str, tuple[Path, dict]], name: str) -> None:
    run, _ = trained[name]
    _, first = load_run(run)
    _, second = load_run(run)
    events, items = _probe(first)
    scores = first.scores(events, items)
    assert scores.shape == items.shape and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, second.scores(events, items))
    rec = first.recommend("3", k=4)
    assert len(rec["items"]) == 4  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_metrics(trained: dict[str, tuple[Path, dict]], name: str,
                                tmp_path: Path) -> None:
    _, metrics = trained[name]
    again = train_run(tiny_config(name), tmp_path / "again")
    assert again["learned"] == metrics["learned"]


@pytest.mark.parametrize("name", [n for n in NAMES if models()[n].item_policy is None])
def test_weighted_models_weights_on_simplex_and_gradients(
        trained: dict[str, tuple[Path, dict]], name: str) -> None:
    run, _ = trained[name]
    _, ranker = load_run(run)
    assert isinstance(ranker, Recommender)
    events, items = _probe(ranker)
    alpha = ranker.event_weights(events, ranker.score_events(events, items))
    assert (alpha >= 0).all()
    np.testing.assert_allclose(alpha.sum(1), 1.0, atol=1e-5)
    # gradients reach every trainable parameter of the predictor
    from deepprl.data.sequences import make_batch

    model = ranker.model
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    model.double()  # gradients in float64 (see assert_gradients)
    batch = double(make_batch(ranker.data, ranker.history[events], events))
    y_hat = model(batch, torch.from_numpy(items))
    y_hat.sum().backward()
    assert_gradients([(n, p.grad) for n, p in model.named_parameters()])


def test_every_model_is_listed_with_a_description() -> None:
    for name, entry in models().items():
        assert entry.description, name
        assert (entry.configure is None) != (entry.item_policy is None), name


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        configure("nope", RunConfig())
    assert json.dumps(sorted(models()))  # listing works


@pytest.mark.parametrize("name", ["mo-linucb", "morl", "mmoe", "deepprl-static"])
def test_static_weights_are_tuned_on_validation_and_saved(
        trained: dict[str, tuple[Path, dict]], name: str) -> None:
    run, metrics = trained[name]
    config = json.loads((run / "config.json").read_text())
    log = (run / "train.log").read_text()
    assert "static weights tuned on validation" in log
    if models()[name].item_policy is not None:
        weights = config["baseline"]["weights"]
        assert metrics["static_weights"] == weights
    else:
        from safetensors.torch import load_file

        weights = load_file(run / "actor.safetensors")["weights"].tolist()
    assert len(weights) == 2 and min(weights) >= 0
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
