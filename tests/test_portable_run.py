"""A run directory is self-contained: recommend and serve need no training log.

The tables a run stores (deepprl.inference_data) must give what the log gives: the same
top-K and scores as a Recommender/ItemRanker built from the whole log, after the log is
moved away or has grown; evaluate still needs the log and says so clearly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from deepprl.artifacts import (
    TABLES_FILE,
    RunError,
    build_item_policy,
    build_model,
    build_policy,
    load_run,
    load_serving_run,
    load_weighted_run,
    read_tensors,
    save_item_run,
    save_run,
    write_tensors,
)
from deepprl.cli import app as cli_app
from deepprl.config import EvalConfig, ModelConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.registry import load_dataset
from deepprl.inference_data import SeenItems, tail_events
from deepprl.recommender import ItemRanker, Recommender
from deepprl.rundir import write_marker
from deepprl.serve import FeedbackStore, ServeSettings, Service
from deepprl.serve.schemas import RecommendRequest
from deepprl.train.run import train_run

SIM = {"name": "simulator", "n_users": 25, "n_items": 30, "events_per_user": 24}
MAPPING = {"columns": {"user": "user", "item": "item", "timestamp": "ts",
                       "context": ["device"], "user_features": ["age"]},
           "objectives": [{"name": "rel", "column": "rel"},
                          {"name": "watch", "column": "watch", "normalise": "minmax"}]}


def _write_log(path: Path, n_users: int = 12, per_user: int = 25) -> None:
    rng = np.random.default_rng(0)
    n = n_users * per_user
    user = np.repeat(np.arange(n_users), per_user)
    pl.DataFrame({
        "user": [f"u{u}" for u in user],
        "item": [f"i{j}" for j in rng.permuted(np.tile(np.arange(40), n // 40 + 1))[:n]],
        "ts": 1_700_000_000 + np.arange(n) * 977 + user * 13,
        "device": rng.choice(["mobile", "tv", "web"], n).tolist(),
        "age": (20 + user * 3).tolist(),
        "rel": rng.uniform(0, 1, n), "watch": rng.uniform(0, 600, n),
    }).write_csv(path)


def _perturbed(module: torch.nn.Module, seed: int) -> None:
    """Untrained weights moved off their initial values, so that users differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def _save_weighted(out: Path, config: RunConfig) -> None:
    data = load_dataset(config.dataset)
    model = build_model(config, data)
    actor = build_policy(config, model, data)
    _perturbed(model, 1)
    _perturbed(actor, 2)
    save_run(out, config, model, actor, data)
    write_marker(out, config.to_dict())  # what train_run does last


def _scores(result: dict) -> dict[str, float]:
    return {r["item"]: r["score"] for r in result["items"]}


def same_top(got: list[dict], expected: list[dict], key: str = "item") -> None:
    """The same top-K up to ties: each position holds an item whose expected score is the
    expected score at that position (1e-6), and the scores agree within 1e-6."""
    assert len(got) == len(expected)
    expected_score = {r[key]: r["score"] for r in expected}
    for j, row in enumerate(got):
        assert row[key] in expected_score, (j, row[key])
        assert abs(expected_score[row[key]] - expected[j]["score"]) <= 1e-6, j
        assert abs(row["score"] - expected[j]["score"]) <= 1e-6, j


def _same_recommendations(log_built: Recommender | ItemRanker,
                          stored: Recommender | ItemRanker, users: list[str]) -> None:
    n_items = log_built.data.n_items
    for user in users:
        for exclude_seen in (False, True):
            a = log_built.recommend(user, k=n_items, exclude_seen=exclude_seen)
            b = stored.recommend(user, k=n_items, exclude_seen=exclude_seen)
            scores_a, scores_b = _scores(a), _scores(b)  # every candidate's score
            assert scores_a.keys() == scores_b.keys(), (user, exclude_seen)
            np.testing.assert_allclose([scores_b[i] for i in scores_a],
                                       list(scores_a.values()), rtol=0, atol=1e-6)
            same_top(b["items"][:10], a["items"][:10])
            if a["weights"] is None:
                assert b["weights"] is None
            else:
                np.testing.assert_allclose(list(b["weights"].values()),
                                           list(a["weights"].values()), rtol=0, atol=1e-6)


# -- the stored tables reproduce the log-built ranker --------------------------------------

@pytest.mark.parametrize("dynamic", [True, False])
def test_stored_tables_score_like_the_log(tmp_path: Path, dynamic: bool) -> None:
    config = RunConfig(dataset=dict(SIM), model=ModelConfig(history_length=4),
                       policy=PolicyConfig(dynamic=dynamic), eval=EvalConfig(k=5))
    _save_weighted(tmp_path, config)
    _, log_built = load_run(tmp_path)
    _, stored = load_serving_run(tmp_path)
    assert isinstance(stored, Recommender) and isinstance(log_built, Recommender)
    assert stored.data.n_events < log_built.data.n_events  # a tail, not the log
    users = list(log_built.data.user_ids)
    _same_recommendations(log_built, stored, users)
    spread = [np.ptp(list(_scores(log_built.recommend(u, k=10)).values())) for u in users]
    assert min(spread) > 1e-3  # the scores are not all tied: the order means something
    if not dynamic:  # frozen weights: one alpha per user, not the policy at the last event
        assert stored.frozen_weights is not None
        assert np.isfinite(stored.frozen_weights[1:]).all()


def test_item_level_baseline_from_the_tables(tmp_path: Path) -> None:
    config = RunConfig(name="drn", dataset=dict(SIM), model=ModelConfig(history_length=4))
    data = load_dataset(config.dataset)
    module, _ = build_item_policy(config, data)
    _perturbed(module, 3)
    save_item_run(tmp_path, config, module, data)
    write_marker(tmp_path, config.to_dict())
    _, log_built = load_run(tmp_path)
    _, stored = load_serving_run(tmp_path)
    assert isinstance(stored, ItemRanker)
    _same_recommendations(log_built, stored, ["1", "9", "25"])


def test_serving_load_never_rebuilds_the_log(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _save_weighted(tmp_path, RunConfig(dataset=dict(SIM)))

    def no_log(spec: object) -> None:
        raise AssertionError("load_serving_run read the training log")

    monkeypatch.setattr("deepprl.data.registry.load_dataset", no_log)
    _, stored = load_serving_run(tmp_path)
    assert len(stored.recommend("3", k=4)["items"]) == 4


def test_tail_and_seen_items() -> None:
    data = load_dataset(dict(SIM))
    rows = tail_events(data, 3)
    assert len(rows) == 3 * data.n_users
    for user in (1, 7, data.n_users):
        np.testing.assert_array_equal(rows[data.user[rows] == user],
                                      data.user_events(user)[-3:])
    seen = SeenItems.from_log(data)
    for user in (1, 12, data.n_users):
        np.testing.assert_array_equal(seen.of(user),
                                      np.unique(data.item[data.user_events(user)]))
        assert seen.events[user] == len(data.user_events(user))
    assert len(seen.of(0)) == 0 and len(seen.of(data.n_users + 1)) == 0


def test_corrupt_tables_are_refused(tmp_path: Path) -> None:
    _save_weighted(tmp_path, RunConfig(dataset=dict(SIM)))
    arrays = read_tensors(tmp_path / TABLES_FILE)
    arrays["item"] = arrays["item"] + 1000  # item indices beyond the catalogue
    write_tensors(tmp_path / TABLES_FILE, arrays)
    with pytest.raises(RunError, match="corrupt or was changed after training"):
        load_serving_run(tmp_path)  # the completion marker's digest sees it first
    config = RunConfig(dataset=dict(SIM)).to_dict()
    write_marker(tmp_path, config)  # past the digest: the tables' own checks
    with pytest.raises(RunError, match="event items out of range"):
        load_serving_run(tmp_path)
    (tmp_path / TABLES_FILE).write_bytes(b"garbage")
    write_marker(tmp_path, config)
    with pytest.raises(RunError, match="not a readable safetensors"):
        load_serving_run(tmp_path)
    (tmp_path / TABLES_FILE).unlink()
    write_marker(tmp_path, config)
    with pytest.raises(RunError, match=r"missing inference\.safetensors"):
        load_serving_run(tmp_path)


# -- a user's own log, trained, then moved away or grown -----------------------------------

@pytest.fixture(scope="module")
def own_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("own-log")
    _write_log(tmp / "log.csv")
    train_run(RunConfig(dataset={"data": str(tmp / "log.csv"), "mapping": MAPPING},
                        train=TrainConfig(epochs=1, valid_fraction=0.2),
                        policy=PolicyConfig(steps=10), eval=EvalConfig(k=1)), tmp / "run")
    torch.set_num_threads(threads)
    return tmp


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


def test_recommend_and_serve_after_the_log_moves(own_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(own_run / "run", run)
    log = own_run / "log.csv"
    _, log_built = load_run(run)
    users = list(log_built.data.user_ids)
    expected = {u: log_built.recommend(u, k=5) for u in users}
    # the service as it was before runs kept tables: built on the whole log
    config, weighted = load_weighted_run(run)
    served_before = Service(config, weighted, store=FeedbackStore(tmp_path / "a.sqlite3",
                                                                  fingerprint="log"),
                            settings=ServeSettings(), version="log")
    request = RecommendRequest(user_id="u4", k=5, timestamp=2e9)
    before = served_before.recommend(request)
    served_before.close()

    moved = own_run / "moved.csv"
    log.rename(moved)
    try:
        for user in users[:4]:
            code, out = _cli("recommend", "--run", str(run), "--user", user, "--k", "5",
                             "--json")
            assert code == 0, out
            same_top(json.loads(out)["items"], expected[user]["items"])
        service = Service.load(run, db=tmp_path / "b.sqlite3")
        after = service.recommend(request)
        assert service.user_state("u4", 2e9)["logged_events"] == 25  # the log's, not the tail's
        service.close()
        same_top(after["items"], before["items"], key="item_id")

        code, out = _cli("evaluate", "--run", str(run))
        assert code == 2
        assert "training log" in out and "log.csv" in out and "is gone" in out
        assert "put the file back" in out and "Traceback" not in out
    finally:
        moved.rename(log)


def test_a_grown_log_does_not_stop_serving(own_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(own_run / "run", run)
    grown = tmp_path / "log.csv"
    text = (own_run / "log.csv").read_text(encoding="utf-8")
    last = text.strip().splitlines()[-1].split(",")
    last[1], last[2] = "i3", str(int(last[2]) + 60)  # a new event of the last user
    grown.write_text(text + ",".join(last) + "\n", encoding="utf-8")
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["dataset"]["data"] = str(grown)
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    write_marker(run, config)  # the run as if trained on that log's path: still complete

    service = Service.load(run, db=tmp_path / "c.sqlite3")
    assert len(service.recommend(RecommendRequest(user_id="u1", k=3))["items"]) == 3
    service.close()
    with pytest.raises(RunError, match="has changed since the run was trained"):
        load_run(run)
    code, out = _cli("evaluate", "--run", str(run))
    assert code == 2 and "log.csv" in out and "Traceback" not in out


def test_recommend_process_reads_no_log(own_run: Path) -> None:
    """The CLI's recommend path imports no dataset loader (polars), nor gymnasium nor the
    progress bars: it starts fast."""
    code = ("import sys; from deepprl.cli import app; "
            "sys.argv = ['deepprl', 'recommend', '--run', sys.argv[1], '--user', 'u2', "
            "'--json'];\ntry:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('polars', 'deepprl.data.registry', "
            "'deepprl.data.encode', 'gymnasium', 'rich.progress') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(own_run / "run")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(json.loads(lines[0])["items"]) == 10
    assert lines[-1] == "[]"


def test_gymnasium_ids_registered_after_a_lazy_import() -> None:
    code = ("import sys, deepprl\nassert 'gymnasium' not in sys.modules\n"
            "import gymnasium.spaces, gymnasium\n"
            "print(sorted(i for i in gymnasium.registry if i.startswith('deepprl/')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['deepprl/MovieLensSim-v0',", "'deepprl/Simulator-v0']"]
