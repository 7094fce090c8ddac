"""ONNX export (deepprl.export): both graphs in onnxruntime give what the PyTorch modules
give on real inputs (max |difference| <= 1e-5), the torch-free `deepprl recommend` answers
what the PyTorch path answers, and `serve --onnx` answers 1,000 requests as PyTorch does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import train_served_run
from deepprl.artifacts import build_model, build_policy, load_serving_run, save_run
from deepprl.cli import app as cli_app
from deepprl.config import EvalConfig, ModelConfig, PolicyConfig, RunConfig
from deepprl.data.inputs import StepArrays, step_arrays, top_k_order
from deepprl.data.registry import load_dataset
from deepprl.data.sequences import Batch, history_index
from deepprl.export.graphs import TOLERANCE, export_into_run, export_run, sample_inputs
from deepprl.export.manifest import EXPORT_DIR, MANIFEST_FILE, MODEL_GRAPH, in_marker
from deepprl.export.runtime import ExportedGraphs, ExportedRecommender, load_exported
from deepprl.policy.weights import FixedWeights
from deepprl.ranking.history import mean_user_embedding
from deepprl.ranking.scoring import score_batch
from deepprl.ranking.utility import top_k
from deepprl.recommender import Recommender
from deepprl.rundir import RunError, read_marker, write_marker
from deepprl.runfiles import read_meta, read_tables
from deepprl.serve import Service
from deepprl.serve.batching import recommend_many
from deepprl.serve.schemas import FeedbackRequest, RecommendRequest
from deepprl.train.run import train_run

SIM = {"name": "simulator", "n_users": 25, "n_items": 30, "events_per_user": 24}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A trained run (its export written by train) with a continuous actor kept as learned,
    so that alpha moves with the state."""
    # one torch thread: the session-wide setting of conftest
    yield train_served_run(tmp_path_factory.mktemp("onnx") / "run")


def _perturbed(module: torch.nn.Module, seed: int) -> None:
    """Untrained weights moved off their initial values, so that users differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def _saved_run(out: Path, config: RunConfig, *, static: list[float] | None = None,
               export: bool = True) -> Recommender:
    """A run as train_run leaves it (tables, export, marker last), with perturbed untrained
    modules; `static`: a run whose pessimism check fell back to this alpha."""
    torch.manual_seed(0)
    data = load_dataset(config.dataset)
    model = build_model(config, data)
    policy = build_policy(config, model, data) if static is None else FixedWeights(static)
    _perturbed(model, 1)
    _perturbed(policy, 2)
    check = None if static is None else {"served": "static", "static_weights": static}
    save_run(out, config, model, policy, data, check=check)
    recommender = Recommender(model, policy, data)
    if export:
        export_into_run(out, config, recommender)
    write_marker(out, config.to_dict())
    return recommender


def _max_diffs(graphs: ExportedGraphs, recommender: Recommender, steps: StepArrays,
               items: np.ndarray) -> dict[str, float]:
    got = graphs.score(steps, items)
    want = score_batch(recommender.model, recommender.policy, Batch.of(steps),
                       torch.from_numpy(items), cold=torch.from_numpy(steps.user == 0),
                       user_embedding=mean_user_embedding(recommender.model))
    return {name: float(np.abs(g - w.numpy()).max())
            for name, g, w in (("state", got.state, want.state), ("y_hat", got.y_hat, want.y_hat),
                               ("alpha", got.alpha, want.alpha),
                               ("scores", got.scores, want.scores))}


def _logged_inputs(recommender: Recommender, n: int, width: int, seed: int
                   ) -> tuple[StepArrays, np.ndarray]:
    """Logged events of the training log (their real histories) and random candidates."""
    data = recommender.data
    rng = np.random.default_rng(seed)
    events = np.sort(rng.choice(data.n_events, size=n, replace=False))
    steps = step_arrays(data, history_index(data, recommender.history_length)[events], events)
    items = rng.integers(1, data.n_items + 1, size=(n, width)).astype(np.int64)
    return steps, items


def _with_hole(steps: StepArrays) -> StepArrays:
    """The first row's history with a missing step in the middle (not left-padded)."""
    mask = steps.hist_mask.copy()
    mask[0, mask.shape[1] // 2] = False
    return StepArrays(user=steps.user, hist_items=np.where(mask, steps.hist_items, 0),
                      hist_gaps=steps.hist_gaps, hist_context=steps.hist_context,
                      hist_mask=mask, context=steps.context)


VARIANTS = {
    "default": (ModelConfig(), PolicyConfig(), None),
    "ddpg-ablations": (ModelConfig(use_attention=False, use_time_gate=False, tower_layers=1,
                                   attention_similarity="dot"),
                       PolicyConfig(algorithm="ddpg", use_context=False), None),
    "transformer-mmoe-dqn": (ModelConfig(encoder="transformer", predictor="mmoe"),
                             PolicyConfig(algorithm="dqn"), None),
    "mose-reinforce": (ModelConfig(encoder="lstm-experts", predictor="mose"),
                       PolicyConfig(algorithm="reinforce"), None),
    "pooled-ple-static": (ModelConfig(encoder="mean-pool", predictor="ple"), PolicyConfig(),
                          [0.3, 0.7]),
    "cross-stitch": (ModelConfig(predictor="cross-stitch"), PolicyConfig(), None),
    "shared-bottom": (ModelConfig(predictor="shared-bottom", history_length=3),
                      PolicyConfig(), None),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_graphs_equal_pytorch_on_real_batches(tmp_path: Path, variant: str) -> None:
    model_config, policy_config, static = VARIANTS[variant]
    config = RunConfig(dataset=dict(SIM), model=model_config, policy=policy_config,
                       eval=EvalConfig(k=5))
    recommender = _saved_run(tmp_path / "run", config, static=static, export=False)
    manifest = export_run(tmp_path / "run", tmp_path / "out")
    assert manifest["check"]["within_tolerance"], manifest["check"]
    graphs = ExportedGraphs(tmp_path / "out")
    # dynamic batch and candidate axes: other sizes than the traced ones, one candidate too
    for n, width, seed in ((1, 1, 0), (7, 30, 1), (64, 12, 2)):
        steps, items = _logged_inputs(recommender, n, width, seed)
        diffs = _max_diffs(graphs, recommender, steps, items)
        assert max(diffs.values()) <= TOLERANCE, (n, width, diffs)
    steps, items = sample_inputs(read_tables(tmp_path / "run",
                                             *read_meta(tmp_path / "run")))
    assert (steps.user == 0).any()  # a cold-start row: the mean user embedding in-graph
    diffs = _max_diffs(graphs, recommender, steps, items)
    assert max(diffs.values()) <= TOLERANCE, diffs
    steps, items = _logged_inputs(recommender, 9, 5, 3)
    if steps.hist_mask[0].all():  # a history with a hole: the encoder's general loop
        diffs = _max_diffs(graphs, recommender, _with_hole(steps), items)
        assert max(diffs.values()) <= TOLERANCE, diffs
    if static is not None:
        state, _ = graphs.predict(steps, items)
        alpha = graphs.weights(state + 1.0, steps.context)  # whatever the state
        assert manifest["served"] == "static"
        np.testing.assert_allclose(alpha, np.tile(static, (len(alpha), 1)), atol=1e-7)


def test_trained_run_holds_its_export_under_the_marker(run: Path) -> None:
    marker = read_marker(run)
    assert marker is not None and in_marker(marker)
    manifest = json.loads((run / EXPORT_DIR / MANIFEST_FILE).read_text())
    assert manifest["check"]["within_tolerance"] and manifest["served"] == "learned"
    graphs = manifest["graphs"]
    assert list(graphs["model"]["inputs"]) == ["user", "hist_items", "hist_gaps",
                                               "hist_context", "hist_mask", "context", "items"]
    assert graphs["model"]["inputs"]["items"]["shape"] == ["batch", "candidates"]
    assert graphs["model"]["outputs"]["y_hat"]["shape"][:2] == ["batch", "candidates"]
    assert list(graphs["policy"]["inputs"]) == ["state", "context"]
    assert manifest["history_length"] == 10 and manifest["objectives"] == ["o1", "o2"]
    assert {"opset", "deepprl_version", "model_version", "feature_encoders",
            "context"} <= set(manifest)
    assert "ONNX export in" in (run / "train.log").read_text()


def test_a_changed_graph_makes_the_run_incomplete(tmp_path: Path, run: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / EXPORT_DIR / MODEL_GRAPH
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(RunError, match=r"onnx/model\.onnx is corrupt or was changed"):
        load_exported(copy)


def _same_answer(got: dict[str, Any], want: dict[str, Any], key: str = "item") -> None:
    """The same top-K up to ties within TOLERANCE; scores, y_hat and alpha within it."""
    assert len(got["items"]) == len(want["items"])
    score = {r[key]: r["score"] for r in want["items"]}
    predicted = {r[key]: list(r["predicted"].values()) for r in want["items"]}
    for j, row in enumerate(got["items"]):
        assert row[key] in score, (j, row[key])
        assert abs(score[row[key]] - want["items"][j]["score"]) <= TOLERANCE, j
        assert abs(row["score"] - want["items"][j]["score"]) <= TOLERANCE, j
        assert np.abs(np.subtract(list(row["predicted"].values()), predicted[row[key]])
                      ).max() <= TOLERANCE, j
    assert list(got["weights"]) == list(want["weights"])
    assert np.abs(np.subtract(list(got["weights"].values()), list(want["weights"].values()))
                  ).max() <= TOLERANCE


@pytest.mark.parametrize("dynamic", [True, False])
def test_recommend_from_the_export_answers_as_pytorch(tmp_path: Path, dynamic: bool) -> None:
    config = RunConfig(dataset=dict(SIM), model=ModelConfig(history_length=4),
                       policy=PolicyConfig(dynamic=dynamic), eval=EvalConfig(k=5))
    _saved_run(tmp_path, config)
    exported = load_exported(tmp_path)
    assert isinstance(exported, ExportedRecommender)
    _, torch_path = load_serving_run(tmp_path)
    data = torch_path.data
    if not dynamic:  # frozen alpha: from the stored table, the same as PyTorch's
        assert exported.tables.frozen_weights is not None
    for i, user in enumerate(data.user_ids):
        for kw in ({"k": 5}, {"k": data.n_items, "exclude_seen": True},
                   {"k": 3, "candidates": list(data.item_ids[i % 7: i % 7 + 9])}):
            _same_answer(exported.recommend(user, **kw), torch_path.recommend(user, **kw))
    with pytest.raises(ValueError, match="k must be positive"):
        exported.recommend(data.user_ids[0], k=0)
    with pytest.raises(ValueError, match="more than once"):
        exported.recommend(data.user_ids[0], candidates=[data.item_ids[0]] * 2)


def test_top_k_order_is_top_k_with_its_tie_rule() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 4, size=int(rng.integers(1, 40))).astype(np.float32)
        k = int(rng.integers(1, 12))
        want = top_k(torch.from_numpy(scores)[None], torch.ones(1, len(scores), dtype=torch.bool),
                     min(k, len(scores)))[0].numpy()
        np.testing.assert_array_equal(top_k_order(scores, k), want)


_NO_TORCH = """
import sys
from deepprl.cli import main
sys.argv = ["deepprl", "recommend", "--run", sys.argv[1], "--user", sys.argv[2], "--json"]
try:
    main()
except SystemExit as stop:
    assert not stop.code, stop.code
assert "torch" not in sys.modules, "the recommend path imported torch"
"""


def _cli_recommend(run: Path, user: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, str(run), user],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_recommend_command_never_imports_torch(run: Path) -> None:
    _, torch_path = load_serving_run(run)
    user = torch_path.data.user_ids[3]
    _same_answer(_cli_recommend(run, user), torch_path.recommend(user, k=10))


def test_a_run_without_export_recommends_through_pytorch(tmp_path: Path) -> None:
    config = RunConfig(dataset=dict(SIM), model=ModelConfig(history_length=4),
                       eval=EvalConfig(k=5))
    _saved_run(tmp_path, config, export=False)  # as a run trained before the export
    assert load_exported(tmp_path) is None
    result = CliRunner().invoke(cli_app, ["recommend", "--run", str(tmp_path), "--user",
                                          "1", "--json"])
    assert result.exit_code == 0, result.output
    _, torch_path = load_serving_run(tmp_path)
    assert json.loads(result.stdout) == torch_path.recommend("1", k=10)


def test_export_command(tmp_path: Path, run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["export", "--run", str(run), "--format", "onnx",
                                     "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["check"]["within_tolerance"]
    # the same weights as the run's own export: the same graphs' outputs
    own = json.loads((run / EXPORT_DIR / MANIFEST_FILE).read_text())
    assert manifest["weights"] == own["weights"] and manifest["model_version"] == \
        own["model_version"]
    bad = runner.invoke(cli_app, ["export", "--run", str(run), "--format", "tflite",
                                  "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "the export format is 'onnx'" in bad.output
    missing = runner.invoke(cli_app, ["export", "--run", str(tmp_path / "nope"),
                                      "--out", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    (tmp_path / "file").write_text("x")
    on_file = runner.invoke(cli_app, ["export", "--run", str(run), "--out",
                                      str(tmp_path / "file")])
    assert on_file.exit_code == 2 and "exists and is not a directory" in on_file.output
    inside = runner.invoke(cli_app, ["export", "--run", str(run), "--out",
                                     str(run / EXPORT_DIR)])
    assert inside.exit_code == 2 and "inside the run directory" in inside.output


def test_export_of_an_item_level_model_is_refused(tmp_path: Path) -> None:
    train_run(RunConfig(name="mo-linucb", dataset=dict(SIM), eval=EvalConfig(k=5)),
              tmp_path / "run")
    assert not (tmp_path / "run" / EXPORT_DIR).exists()
    result = CliRunner().invoke(cli_app, ["export", "--run", str(tmp_path / "run"),
                                          "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "ranks items directly" in result.output


def _requests(service: Service, n: int) -> list[RecommendRequest]:
    """n requests over every user, a guest, candidate lists, k and exclude_seen."""
    users, items = list(service.data.user_ids), list(service.data.item_ids)
    at = float(service.data.time.max()) + 3600.0
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        user = users[i % len(users)] if i % 13 else f"guest-{i % 3}"
        width = int(rng.integers(1, len(items) + 1))
        candidates = list(rng.choice(items, size=width, replace=False)) if i % 4 else None
        out.append(RecommendRequest(user_id=user, k=1 + i % 12, candidates=candidates,
                                    exclude_seen=i % 5 == 0 and candidates is None,
                                    timestamp=at + i))
    return out


def _same_response(got: dict[str, Any], want: dict[str, Any]) -> None:
    _same_answer(got, want, key="item_id")
    assert {k: v for k, v in got.items() if k not in ("items", "weights")} == \
        {k: v for k, v in want.items() if k not in ("items", "weights")}


def test_serve_onnx_answers_1000_requests_as_pytorch(tmp_path: Path, run: Path) -> None:
    onnx = Service.load(run, db=tmp_path / "a.sqlite3", onnx=True)
    plain = Service.load(run, db=tmp_path / "b.sqlite3")
    try:
        assert onnx.scorer is not None and plain.scorer is None
        assert onnx.version == plain.version
        at = float(plain.data.time.max())
        for i, user in enumerate([*plain.data.user_ids[:5], "guest-1"]):  # live histories
            for service in (onnx, plain):
                service.feedback(FeedbackRequest(user_id=user, timestamp=at + 60 * i,
                                                 item_id=plain.data.item_ids[i]))
        requests = _requests(plain, 1000)
        for req in requests[:300]:  # each on its own (Service.score)
            _same_response(onnx.recommend(req), plain.recommend(req))
        rest = requests[300:]  # in batches (deepprl.serve.batching)
        for lo in range(0, len(rest), 50):
            for got, want in zip(recommend_many(onnx, rest[lo: lo + 50]),
                                 recommend_many(plain, rest[lo: lo + 50]), strict=True):
                assert isinstance(got, dict) and isinstance(want, dict), (got, want)
                _same_response(got, want)
    finally:
        onnx.close()
        plain.close()


def test_serve_onnx_refuses_an_export_of_other_weights(tmp_path: Path, run: Path) -> None:
    other = tmp_path / "other"
    config = RunConfig(dataset={"name": "simulator", "n_users": 30, "n_items": 40,
                                "events_per_user": 20}, eval=EvalConfig(k=5))
    _saved_run(other, config)
    with pytest.raises(RunError, match="exported from other weights"):
        Service.load(run, db=tmp_path / "db.sqlite3", onnx_dir=other / EXPORT_DIR)
    bare = tmp_path / "bare"
    _saved_run(bare, config, export=False)
    with pytest.raises(RunError, match="no ONNX export"):
        Service.load(bare, db=tmp_path / "db2.sqlite3", onnx=True)


def test_the_docs_snippet_runs(run: Path) -> None:
    """docs/serving.md's onnxruntime snippet, as written, on a run's export: the top items
    PyTorch ranks first for the same inputs (a user unknown to the log, no history)."""
    text = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert found, "docs/serving.md lost its onnx snippet"
    namespace: dict[str, Any] = {"EXPORT": str(run / EXPORT_DIR)}
    exec(found.group(1), namespace)
    _, recommender = load_serving_run(run)
    feeds = namespace["feeds"]
    out = score_batch(recommender.model, recommender.policy,
                      Batch(**{k: torch.from_numpy(v) for k, v in feeds.items()
                               if k != "items"}),
                      torch.from_numpy(feeds["items"]),
                      user_embedding=mean_user_embedding(recommender.model))
    order = top_k(out.scores, torch.ones_like(out.scores, dtype=torch.bool),
                  len(namespace["top"]))[0]
    ids = namespace["candidate_ids"]
    assert [ids[j] for j in order.tolist()] == namespace["top"]
