"""End to end on a small simulator: train, save, load, recommend, evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepprl.artifacts import RunError, build_model, build_policy, load_run, save_run
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.interactions import UnknownIdError
from deepprl.data.registry import load_dataset
from deepprl.data.splits import temporal_holdout
from deepprl.eval.offline import METHODS, evaluate_ranker
from deepprl.recommender import Recommender
from deepprl.rundir import write_marker
from deepprl.train.run import train_run
from deepprl.train.stage1 import fit_predictor

DATASET = {"name": "simulator", "n_users": 30, "n_items": 40, "events_per_user": 30}
RUN_FILES = ("config.json", "schema.json", "model.safetensors", "actor.safetensors",
             "metrics.json", "train.log")


def small_config(seed: int = 0) -> RunConfig:
    return RunConfig(dataset=dict(DATASET), train=TrainConfig(epochs=2),
                     policy=PolicyConfig(steps=200, fallback="none"), eval=EvalConfig(k=5),
                     seed=seed)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, _one_thread: None) -> dict[str, Path]:
    """Three trained runs: seed 0 twice, seed 1 once."""
    root = tmp_path_factory.mktemp("runs")
    out = {"a": root / "seed0_a", "b": root / "seed0_b", "c": root / "seed1"}
    train_run(small_config(0), out["a"])
    train_run(small_config(0), out["b"])
    train_run(small_config(1), out["c"])
    return out


@pytest.fixture(scope="module")
def loaded(runs: dict[str, Path]) -> tuple[RunConfig, Recommender]:
    return load_run(runs["a"])


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def _reseal(run: Path) -> None:
    """A new completion marker over a damaged copy: what the checks below load_run's own
    digest check see (e.g. a run written elsewhere, by another version)."""
    marker = json.loads((run / "COMPLETE.json").read_text(encoding="utf-8"))
    write_marker(run, marker["config"])


# -- the run directory ---------------------------------------------------------------------

def test_train_run_writes_every_file(runs: dict[str, Path]) -> None:
    for name in RUN_FILES:
        path = runs["a"] / name
        assert path.is_file(), name
        assert path.stat().st_size > 0, name
    config = json.loads((runs["a"] / "config.json").read_text(encoding="utf-8"))
    assert RunConfig.from_dict(config) == small_config(0)
    schema = json.loads((runs["a"] / "schema.json").read_text(encoding="utf-8"))
    assert schema["objectives"] == ["o1", "o2"]
    assert len(schema["user_ids"]) == 30 and len(schema["item_ids"]) == 40
    metrics = _metrics(runs["a"])
    for method in METHODS:
        assert set(metrics[method]["objectives"]) == {"o1", "o2"}
        assert np.isfinite(metrics[method]["reward"])
    assert "stage 1" in (runs["a"] / "train.log").read_text(encoding="utf-8")
    # stage 1 validated every epoch and kept its best; the flags are recorded
    assert all("valid_loss" in r and "valid_mae" in r for r in metrics["stage1"])
    best = min(metrics["stage1"], key=lambda r: r["valid_loss"])["epoch"]
    assert metrics["best_epoch"] == best
    checks = metrics["stage1_checks"]
    assert set(checks["prediction_spread"]) == {"o1", "o2"}
    assert {"collapsed", "loss_rise", "loss_rose", "thresholds"} <= set(checks)


def test_same_seed_same_metrics(runs: dict[str, Path]) -> None:
    a, b = _metrics(runs["a"]), _metrics(runs["b"])
    for method in METHODS:
        assert a[method]["objectives"] == b[method]["objectives"], method
        assert a[method]["reward"] == b[method]["reward"], method
    assert a["test_mae"] == b["test_mae"]
    for name in ("model.safetensors", "actor.safetensors"):
        ta, tb = load_file(runs["a"] / name), load_file(runs["b"] / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            torch.testing.assert_close(ta[key], tb[key], atol=0, rtol=0, msg=key)


def test_different_seed_different_weights(runs: dict[str, Path]) -> None:
    for name in ("model.safetensors", "actor.safetensors"):
        ta, tc = load_file(runs["a"] / name), load_file(runs["c"] / name)
        assert ta.keys() == tc.keys()
        assert any(not torch.equal(ta[k], tc[k]) for k in ta
                   if not k.endswith("_feature_table")), name


# -- save -> load -> predict -------------------------------------------------------------------

def test_loaded_run_reproduces_saved_metrics(runs: dict[str, Path],
                                             loaded: tuple[RunConfig, Recommender]) -> None:
    config, recommender = loaded
    assert config == small_config(0)
    again = evaluate_ranker(recommender, config)
    saved = _metrics(runs["a"])
    for method in METHODS:
        assert again[method]["objectives"] == saved[method]["objectives"], method
        assert again[method]["reward"] == saved[method]["reward"], method


def test_save_load_predict_identical(tmp_path: Path) -> None:
    config = small_config(0)
    data = load_dataset(config.dataset)
    torch.manual_seed(1234)  # not the run seed: loading must not re-create these weights
    model = build_model(config, data)
    fit_predictor(model, data, np.flatnonzero(temporal_holdout(data).train),
                  TrainConfig(epochs=1), seed=3)
    actor = build_policy(config, model, data)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.1 * torch.randn_like(p))
    memory = Recommender(model, actor, data)
    save_run(tmp_path, config, model, actor, data)
    write_marker(tmp_path, config.to_dict())  # train_run writes it after its last file
    _, disk = load_run(tmp_path)

    events = np.arange(0, data.n_events, 7)
    items = np.random.default_rng(0).integers(0, data.n_items + 1, size=(len(events), 9))
    a, b = memory.score_events(events, items), disk.score_events(events, items)
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.context, b.context)
    np.testing.assert_array_equal(a.y_hat, b.y_hat)
    np.testing.assert_array_equal(memory.weights(a.state, a.context),
                                  disk.weights(b.state, b.context))
    for user in ("1", "17", "30"):
        assert memory.recommend(user, k=6) == disk.recommend(user, k=6)
        assert memory.recommend(user, k=3, candidates=["5", "9", "2", "33"]) == \
            disk.recommend(user, k=3, candidates=["5", "9", "2", "33"])

    # and the loaded weights are not a fresh initialisation with the run's seed
    torch.manual_seed(config.seed)
    fresh = Recommender(build_model(config, data), build_policy(config, build_model(config, data),
                                                               data), data)
    assert not np.array_equal(fresh.score_events(events, items).y_hat, b.y_hat)


# -- broken run directories -------------------------------------------------------------------

def test_load_run_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "nope")


def test_load_run_missing_file(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    (run / "actor.safetensors").unlink()
    with pytest.raises(RunError, match=r"missing actor\.safetensors"):
        load_run(run)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_load_run_corrupt_weights(runs: dict[str, Path], tmp_path: Path, damage: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    path = run / "model.safetensors"
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RunError, match="corrupt or was changed after training"):
        load_run(run)
    _reseal(run)
    with pytest.raises(RunError, match="corrupt or incompatible weights"):
        load_run(run)


@pytest.mark.parametrize("version", ["9.0.0", "1.1.0"])
def test_load_run_other_major_version(runs: dict[str, Path], tmp_path: Path,
                                      version: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    schema = json.loads((run / "schema.json").read_text(encoding="utf-8"))
    schema["deepprl_version"] = version
    (run / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    _reseal(run)
    with pytest.raises(RunError, match=rf"written by deepprl {version}.*retrain"):
        load_run(run)


def test_load_run_unreadable_json(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    (run / "config.json").write_text("{not json", encoding="utf-8")
    _reseal(run)
    with pytest.raises(RunError, match=r"config\.json"):
        load_run(run)


@pytest.mark.parametrize("schema", ["no_ids", "not_an_object"])
def test_load_run_incomplete_schema(runs: dict[str, Path], tmp_path: Path, schema: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    raw = json.loads((run / "schema.json").read_text(encoding="utf-8"))
    raw = {k: v for k, v in raw.items() if k != "user_ids"} if schema == "no_ids" else [1]
    (run / "schema.json").write_text(json.dumps(raw), encoding="utf-8")
    _reseal(run)
    with pytest.raises(RunError, match="schema"):
        load_run(run)


def test_load_run_unknown_dataset(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    raw = json.loads((run / "config.json").read_text(encoding="utf-8"))
    raw["dataset"]["name"] = "no-such-dataset"
    (run / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    _reseal(run)
    with pytest.raises(RunError, match="no-such-dataset"):
        load_run(run)


# -- Recommender.recommend -------------------------------------------------------------------

def test_recommend_contract(loaded: tuple[RunConfig, Recommender]) -> None:
    _, rec = loaded
    out = rec.recommend("7", k=5)
    assert out["user"] == "7"
    weights = out["weights"]
    assert list(weights) == ["o1", "o2"]
    assert all(w >= 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    items = out["items"]
    assert len(items) == 5
    assert len({it["item"] for it in items}) == 5
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    for it in items:
        assert it["item"] in rec.data.item_ids
        assert list(it["predicted"]) == ["o1", "o2"]
        assert all(0 < v < 1 for v in it["predicted"].values())
        utility = sum(weights[n] * it["predicted"][n] for n in weights)
        assert it["score"] == pytest.approx(utility, abs=1e-5)
    # the top 5 of all items: nothing left out scores higher
    full = rec.recommend("7", k=rec.data.n_items)
    assert len(full["items"]) == rec.data.n_items
    assert [it["item"] for it in full["items"][:5]] == [it["item"] for it in items]


def test_recommend_candidates_and_exclude_seen(loaded: tuple[RunConfig, Recommender]) -> None:
    _, rec = loaded
    out = rec.recommend("3", k=2, candidates=["10", "4", "25"])
    assert len(out["items"]) == 2
    assert {it["item"] for it in out["items"]} <= {"10", "4", "25"}
    seen = {rec.data.item_ids[i - 1] for i in rec.data.item[rec.data.user_events(3)]}
    fresh = rec.recommend("3", k=5, exclude_seen=True)
    assert len(fresh["items"]) == 5
    assert not {it["item"] for it in fresh["items"]} & seen


def test_recommend_errors(loaded: tuple[RunConfig, Recommender]) -> None:
    _, rec = loaded
    with pytest.raises(UnknownIdError, match="unknown user id"):
        rec.recommend("no-such-user", k=3)
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be positive"):
            rec.recommend("1", k=k)
    with pytest.raises(ValueError, match="candidates must not be empty"):
        rec.recommend("1", k=3, candidates=[])
    with pytest.raises(UnknownIdError, match="unknown item id"):
        rec.recommend("1", k=3, candidates=["1", "no-such-item"])
    last = float(rec.data.time[rec.data.user_events(1)[-1]])
    with pytest.raises(ValueError, match="before the user's last event"):
        rec.recommend("1", k=3, at_time=last - 1.0)
    assert len(rec.recommend("1", k=3, at_time=last + 3600.0)["items"]) == 3


def test_recommend_rejects_nan_time(loaded: tuple[RunConfig, Recommender]) -> None:
    _, rec = loaded
    with pytest.raises(ValueError, match="at_time must be a finite number, got nan"):
        rec.recommend("1", k=3, at_time=float("nan"))


# -- offline evaluation ------------------------------------------------------------------------

def test_evaluate_ranker_methods_and_oracle(loaded: tuple[RunConfig, Recommender]
                                                 ) -> None:
    config, rec = loaded
    result = evaluate_ranker(rec, config)
    assert set(METHODS) <= set(result)
    assert result["protocol"]["k"] == 5
    assert result["protocol"]["evaluated_events"] > 0
    oracle = result["oracle"]["reward"]
    for method in ("learned", "equal", "popularity"):
        assert oracle >= result[method]["reward"] - 1e-6, method
    assert oracle > min(result[m]["reward"] for m in ("learned", "equal", "popularity"))
    for method in ("learned", "equal"):
        weights = result[method]["mean_weights"]
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert result["equal"]["mean_weights"] == pytest.approx({"o1": 0.5, "o2": 0.5})


def test_load_run_detects_changed_data(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    raw = json.loads((run / "config.json").read_text(encoding="utf-8"))
    raw["dataset"]["seed"] = 12345  # same ids, different log
    (run / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    _reseal(run)
    with pytest.raises(RunError, match="has changed since the run was trained"):
        load_run(run)


def test_recommend_rejects_duplicate_candidates(
        loaded: tuple[RunConfig, Recommender]) -> None:
    _, rec = loaded
    with pytest.raises(ValueError, match="more than once"):
        rec.recommend("1", k=2, candidates=["4", "4", "5"])
