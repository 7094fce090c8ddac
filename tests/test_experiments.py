"""The experiment commands (quick mode, as CI runs them) and the statistics behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepprl.cli import app
from deepprl.eval.pareto import dominated_hull_volume
from deepprl.experiments import EXPERIMENTS, Context, run_experiment
from deepprl.experiments.analyses import per_user_correlation
from deepprl.experiments.frontier import weight_grid
from deepprl.experiments.stats import improvement, paired_p, stars
from deepprl.report import md_table

runner = CliRunner()


# ---------------------------------------------------------------- statistics


def test_stars_follow_the_paper_thresholds() -> None:
    assert [stars(p) for p in (0.001, 0.02, 0.07, 0.2, float("nan"))] == \
        ["***", "**", "*", "", ""]


def test_paired_p_matches_a_hand_computed_t_test() -> None:
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.9, 2.0, 3.5])
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    from scipy import stats

    assert paired_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df=len(d) - 1))
    assert np.isnan(paired_p(a[:1], b[:1]))  # one pair: no test
    assert np.isnan(paired_p(a, a - 1.0))  # constant difference: no variance


def test_improvement_is_relative_percent() -> None:
    assert improvement(1.1, 1.0) == pytest.approx(10.0)
    assert improvement(0.9, 1.0) == pytest.approx(-10.0)


# ---------------------------------------------------------------- fronts


def test_dominated_hull_of_one_point_is_its_box() -> None:
    ref = np.array([0.1, 0.2])
    assert dominated_hull_volume(np.array([[0.5, 0.6]]), ref) == pytest.approx(0.4 * 0.4)


def test_dominated_hull_of_two_points_closes_the_staircase() -> None:
    # boxes [0,1]x[0,3] and [0,3]x[0,1]; the hull adds the triangle (1,3)-(3,1)-(1,1)
    ref = np.zeros(2)
    points = np.array([[1.0, 3.0], [3.0, 1.0]])
    assert dominated_hull_volume(points, ref) == pytest.approx(3 + 3 - 1 + 2)


def test_points_not_above_the_reference_add_nothing() -> None:
    ref = np.array([0.5, 0.5])
    assert dominated_hull_volume(np.array([[0.4, 0.9]]), ref) == 0.0


def test_weight_grid_is_the_papers_sweep() -> None:
    grid = weight_grid(2)
    assert grid.shape == (11, 2)
    assert np.allclose(grid.sum(1), 1.0)
    assert np.allclose(np.sort(grid[:, 0]), np.linspace(0, 1, 11))
    assert weight_grid(3).shape == (66, 3)


def test_per_user_correlation_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    user = np.repeat([1, 2, 3], [12, 15, 4])  # user 3 has too few events
    a = rng.normal(size=len(user))
    b = -a + rng.normal(scale=0.5, size=len(user))
    corr = per_user_correlation(user, a, b)
    expected = [np.corrcoef(a[user == u], b[user == u])[0, 1] for u in (1, 2)]
    assert corr == pytest.approx(expected)


def test_md_table_rounds_floats_and_marks_nan() -> None:
    text = md_table(["a", "b"], [["x", 0.123456], ["y", float("nan")]], digits=3)
    assert "0.123" in text and "—" in text


# ---------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("experiments")


SIMULATOR_EXPERIMENTS = ["table4", "table5", "table6", "table8", "table13", "figure1", "figure2",
                         "sensitivity", "scalability"]


@pytest.mark.parametrize("name", SIMULATOR_EXPERIMENTS)
def test_quick_experiment_writes_its_report(workdir: Path, name: str) -> None:
    out, runs = workdir / "reports", workdir / "runs"
    result = runner.invoke(app, ["experiment", name, "--dataset", "simulator", "--quick",
                                 "--out", str(out), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    md = out / name / "simulator.md"
    assert Path(result.output.strip()) == md
    text = md.read_text()
    assert f"Made by: `deepprl experiment {name} --dataset simulator --quick`" in text
    payload = json.loads((out / name / "simulator.json").read_text())
    assert payload["experiment"] == name
    for png in (out / name).glob("simulator-*.png"):
        assert png.stat().st_size > 1000
        assert f"({png.name})" in text


def test_table4_compares_deepprl_with_every_baseline(workdir: Path) -> None:
    ctx = Context(dataset="simulator", quick=True, out=workdir / "reports",
                  runs=workdir / "runs", command="test")
    md = run_experiment("table4", ctx)
    payload = json.loads(md.with_suffix(".json").read_text())
    assert set(payload["means"]) == {"deepprl", "mo-linucb", "morl", "ple", "mmoe", "mose",
                                     "shared-bottom", "reinforce-topk", "drn"}
    for column, test in payload["tests"].items():
        means = {m: v[column] for m, v in payload["means"].items()}
        best_other = max(v for m, v in means.items() if m != "deepprl")
        assert means[test["rival"]] == best_other
        assert test["improvement_pct"] == pytest.approx(
            100 * (means["deepprl"] - best_other) / abs(best_other))
    # the report's means against an independent evaluation of the cached runs: the offline
    # protocol of `deepprl evaluate`, not the experiment's own per-event code path
    from deepprl.eval.offline import evaluate_run
    from deepprl.experiments.runs import run_config, run_dir

    assert payload["seeds"] == 1  # quick mode: the mean is that of the one seed
    for model in ("deepprl", "mmoe"):
        path = run_dir(ctx, run_config(ctx, model, 0))
        fresh = evaluate_run(path)
        reported = payload["means"][model]
        assert reported["reward"] == pytest.approx(fresh["reward"], rel=1e-6), model
        for name, value in fresh["objectives"].items():
            assert reported[name] == pytest.approx(value, rel=1e-6), (model, name)
    # the references: DeepPRL's predictor with equal / static weights, popularity, oracle
    refs = payload["references"]
    assert {"equal", "static", "popularity", "oracle"} <= set(refs)
    ceiling = refs["weighting_ceiling"]  # the most any ranking by sum_k alpha_k o_k earns
    assert ceiling["static"] <= ceiling["per_event"] <= refs["oracle"]["reward"] + 1e-6


def test_table5_volumes_are_fractions_of_the_oracle(workdir: Path) -> None:
    ctx = Context(dataset="simulator", quick=True, out=workdir / "reports",
                  runs=workdir / "runs", command="test")
    payload = json.loads(run_experiment("table5", ctx).with_suffix(".json").read_text())
    volumes = payload["volumes"]
    assert volumes["oracle"]["hv_fraction_of_oracle"] == pytest.approx(1.0)
    for name, v in volumes.items():
        assert 0.0 <= v["hypervolume"] <= volumes["oracle"]["hypervolume"] + 1e-9, name
    assert len(payload["fronts"]["mmoe"]) == 11  # the static-weight sweep
    assert len(payload["fronts"]["deepprl"]) == 1  # one point per initialisation


def test_runs_are_reused_across_experiments(workdir: Path) -> None:
    deepprl_runs = list((workdir / "runs").glob("quick/*/deepprl/seed0/metrics.json"))
    assert deepprl_runs, "table4 should have cached its DeepPRL run"
    before = deepprl_runs[0].stat().st_mtime_ns
    result = runner.invoke(app, ["experiment", "table6", "--dataset", "simulator", "--quick",
                                 "--out", str(workdir / "reports"),
                                 "--runs", str(workdir / "runs")])
    assert result.exit_code == 0, result.output
    assert deepprl_runs[0].stat().st_mtime_ns == before
    # the weights each variant learned: one mean alpha per seed, on the simplex
    report = json.loads((workdir / "reports" / "table6" / "simulator.json").read_text())
    weights = report["mean_weights"]
    assert set(weights) == {"deepprl", "deepprl-no-dynamic", "deepprl-no-context",
                            "deepprl-no-dynamic-no-context"}
    for w in weights.values():
        assert len(w["per_seed"]) == report["seeds"]
        assert sum(w["mean"]) == pytest.approx(1.0, abs=1e-5)
    assert "The weights each variant learned" in (
        workdir / "reports" / "table6" / "simulator.md").read_text()


def test_figure8_reports_every_variant_for_each_picked_user(workdir: Path) -> None:
    from deepprl.experiments.figure8 import MIN_EVENTS_QUICK
    from deepprl.experiments.offline import TABLE6_MODELS

    result = runner.invoke(app, ["experiment", "figure8", "--dataset", "simulator", "--quick",
                                 "--out", str(workdir / "reports"),
                                 "--runs", str(workdir / "runs")])
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "reports" / "figure8" / "simulator.json").read_text())
    users = report["users"]
    assert len(users) == 4
    weights = [u["weight_objective_1"] for u in users.values()]
    assert weights == sorted(weights)  # quantiles of the preference, lowest first
    text = (workdir / "reports" / "figure8" / "simulator.md").read_text()
    sections = text.split("\n## User ")[1:]
    assert len(sections) == 4
    for (raw, user), section in zip(users.items(), sections, strict=True):
        assert section.startswith(raw + " ")
        assert min(user["events"]) >= MIN_EVENTS_QUICK
        assert set(user["methods"]) == set(TABLE6_MODELS)
        for m in TABLE6_MODELS:  # one row per method in this user's table
            assert section.count(f"| `{m}` |") == 1
        for method in user["methods"].values():
            assert method["distance"] >= 0 and 0 < method["utility_fraction"] <= 1 + 1e-6
    assert (workdir / "reports" / "figure8" / "simulator-figure8.png").stat().st_size > 1000


def test_item_baselines_with_tuned_weights_are_reused(workdir: Path) -> None:
    # MO-LinUCB saves the weights it tuned in its config.json; asking again for the run
    # without weights must find it, not retrain it
    metrics = next((workdir / "runs").glob("quick/simulator*/mo-linucb/seed0/metrics.json"))
    assert "weights" in json.loads((metrics.parent / "config.json").read_text())["baseline"]
    before = metrics.stat().st_mtime_ns
    result = runner.invoke(app, ["experiment", "table4", "--dataset", "simulator", "--quick",
                                 "--out", str(workdir / "reports"),
                                 "--runs", str(workdir / "runs")])
    assert result.exit_code == 0, result.output
    assert metrics.stat().st_mtime_ns == before


def test_report_gathers_every_experiment(workdir: Path) -> None:
    result = runner.invoke(app, ["report", "--reports", str(workdir / "reports")])
    assert result.exit_code == 0, result.output
    text = (workdir / "reports" / "README.md").read_text()
    for name in SIMULATOR_EXPERIMENTS:
        assert f"**{name}**" in text
    assert "(table5/simulator-figure7.png)" in text
    # it opens with DeepPRL against the best other method, a row per Table 4 column
    summary = text.split("\n\n- **")[0]
    assert "## DeepPRL against the best other method (Table 4)" in summary
    payload = json.loads((workdir / "reports" / "table4" / "simulator.json").read_text())
    for column, test in payload["tests"].items():
        ours = payload["means"]["deepprl"][column]
        assert f"| {column} | {ours:.4f} | `{test['rival']}` " in summary
    # each Table 4 report opens with diagnose's verdict on every DeepPRL run
    blocks = (workdir / "reports" / "table4" / "simulator.md").read_text().split("\n\n")
    assert blocks[3].startswith("## Can per-user weights pay here?")
    assert blocks[4].startswith("**Verdict (run 0): ")
    assert len(payload["diagnose"]) == payload["seeds"]
    assert all(isinstance(v["pays"], bool) for v in payload["diagnose"])
    assert all(v["shared_tower"] is None or v["shared_tower"] in payload["objectives"]
               for v in payload["diagnose"])
    assert "| every objective reads one tower |" in blocks[5]


def test_experiment_list_and_errors() -> None:
    listed = runner.invoke(app, ["experiment", "list"])
    assert listed.exit_code == 0
    for name in EXPERIMENTS:
        assert name in listed.output
    unknown = runner.invoke(app, ["experiment", "table99"])
    assert unknown.exit_code == 2 and "unknown experiment" in unknown.output
    wrong = runner.invoke(app, ["experiment", "figure2", "--dataset", "movielens-100k"])
    assert wrong.exit_code == 2 and "applies to" in wrong.output


def test_report_without_reports_fails_clearly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--reports", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no reports" in result.output


@pytest.mark.parametrize("dataset", [
    "movielens-100k",  # bundled with the package
    pytest.param("movielens-latest-small", marks=pytest.mark.needs_data("movielens-latest-small")),
    pytest.param("yelp-hin", marks=pytest.mark.needs_data("yelp-hin"))])
def test_figure1_on_each_log(workdir: Path, dataset: str) -> None:
    result = runner.invoke(app, ["experiment", "figure1", "--dataset", dataset, "--quick",
                                 "--out", str(workdir / "reports")])
    assert result.exit_code == 0, result.output
    payload = json.loads((workdir / "reports" / "figure1" / f"{dataset}.json").read_text())
    assert payload["users"] > 10 and -1.0 <= payload["mean"] <= 1.0
    assert ("by_hour" in payload) == (dataset != "yelp-hin")  # Yelp-HIN has no clock


def test_folds_need_at_least_three(workdir: Path) -> None:
    result = runner.invoke(app, ["experiment", "table4", "--dataset", "simulator", "--quick",
                                 "--folds", "2", "--out", str(workdir / "reports"),
                                 "--runs", str(workdir / "runs")])
    assert result.exit_code == 2 and ">= 3" in result.output


def test_folds_repeat_every_method_on_every_fold(workdir: Path) -> None:
    from deepprl.experiments.results import run_models

    ctx = Context(dataset="simulator", quick=True, folds=3, runs=workdir / "runs")
    res = run_models(ctx, ("deepprl", "mmoe"))
    assert res.seeds == 3  # one seed x three folds
    folds = sorted(p.name for p in (workdir / "runs").glob("quick/*/mmoe/seed0-fold*"))
    assert folds == ["seed0-fold0of3", "seed0-fold1of3", "seed0-fold2of3"]
    tested = [set(r.events.tolist()) for r in res.runs["deepprl"]]
    assert not tested[0] & tested[1] and not tested[1] & tested[2]  # disjoint test folds
    for ours, theirs in zip(res.runs["deepprl"], res.runs["mmoe"], strict=True):
        assert np.array_equal(ours.events, theirs.events)  # paired on the same events


@pytest.mark.needs_data("movielens-latest-small")
def test_sparsity_quick_runs_every_method_on_the_smallest_subset(workdir: Path) -> None:
    result = runner.invoke(app, ["experiment", "sparsity", "--dataset",
                                 "movielens-latest-small", "--quick", "--out",
                                 str(workdir / "reports"), "--runs", str(workdir / "runs")])
    assert result.exit_code == 0, result.output
    payload = json.loads((workdir / "reports" / "sparsity" /
                          "movielens-latest-small.json").read_text())
    subset = payload["subsets"]["3"]
    assert subset["records"] < 20_000 and len(subset["means"]) == 9
    assert subset["sparsity_pct"] == pytest.approx(
        100 * subset["records"] / (subset["users"] * subset["items"]))


def test_run_evaluations_are_cached_and_identical(workdir: Path) -> None:
    from deepprl.experiments.frontier import CACHE, _evaluate, evaluate_run

    run = next((workdir / "runs").glob("quick/*/mmoe/seed0"))
    (run / CACHE).unlink(missing_ok=True)
    first = evaluate_run(run)
    assert (run / CACHE).is_file()
    cached, fresh = evaluate_run(run), _evaluate(run)
    for name in ("events", "objectives", "reward", "sweep", "oracle_sweep", "oracle", "ref"):
        assert np.array_equal(getattr(cached, name), getattr(first, name)), name
        assert np.array_equal(getattr(fresh, name), getattr(first, name)), name
    assert cached.protocol == first.protocol and cached.model == "mmoe"


def test_table13_correlations_match_numpy_over_the_top_k_items() -> None:
    from deepprl.eval.evaluator import EvalSet
    from deepprl.eval.metrics import pair_correlations
    from deepprl.experiments.correlation import top_k_items

    rng = np.random.default_rng(3)
    values = rng.random((40, 3))
    got = pair_correlations(values, ("a", "b", "c"))
    assert list(got) == ["a-b", "a-c", "b-c"]
    assert got["a-c"] == pytest.approx(np.corrcoef(values[:, 0], values[:, 2])[0, 1])
    assert np.isnan(pair_correlations(np.c_[values[:, 0], np.ones(40)], ("a", "b"))["a-b"])
    # two events of four candidates, one padded: top-2 by score, padding never chosen
    objectives = rng.random((2, 4, 2))
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    eval_set = EvalSet(events=np.arange(2), items=np.ones((2, 4), dtype=np.int64),
                       valid=valid, objectives=objectives, reward=rng.random((2, 4)),
                       excluded=0, total=2)
    scores = np.array([[0.1, 0.9, 0.5, 9.0], [4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(top_k_items(eval_set, scores, 2),
                                  objectives[[0, 0, 1, 1], [1, 2, 0, 1]])


def test_three_objective_report_is_named_after_its_options(workdir: Path) -> None:
    out, runs = workdir / "reports3", workdir / "runs3"
    args = ["experiment", "table5", "--dataset", "simulator", "--quick", "--out", str(out),
            "--runs", str(runs), "--dataset-option", "n_objectives=3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    md = out / "table5" / "simulator-n_objectives-3.md"
    text = md.read_text()
    assert "--dataset-option n_objectives=3" in text
    payload = json.loads(md.with_suffix(".json").read_text())
    assert payload["objectives"] == ["o1", "o2", "o3"]
    assert len(payload["reference_point"]) == 3
    assert "| oracle | 66 |" in text  # the step-0.1 simplex grid of three objectives
    assert (out / "table5" / "simulator-n_objectives-3-figure7.png").stat().st_size > 1000
    refused = runner.invoke(app, ["experiment", "longterm", "--dataset", "simulator",
                                  "--quick", "--dataset-option", "n_objectives=3"])
    assert refused.exit_code != 0 and "takes no --dataset-option" in refused.output
    bad = runner.invoke(app, ["experiment", "table4", "--dataset", "movielens-100k",
                              "--dataset-option", "objectives=relevance"])
    assert bad.exit_code != 0 and "at least two objectives" in bad.output


@pytest.mark.parametrize(("name", "self_weight", "reused"),
                         [("drn", 0.9, True), ("mo-linucb", 0.9, True), ("deepprl", 0.9, False),
                          ("deepprl", 0.0, True)])
def test_cached_runs_from_before_the_attention_prior(name: str, self_weight: float,
                                                     reused: bool) -> None:
    """A run cached before model.mixture_self_weight existed, against today's config with
    the prior at `self_weight`: an item-level baseline (no predictor; its config still names
    the default 'moh') is the same training whatever the prior, a DeepPRL run is an MoH
    without the prior, so only a config without it reuses the run."""
    import dataclasses

    from deepprl.artifacts import saved_run_config
    from deepprl.config import RunConfig
    from deepprl.experiments.runs import same_training
    from deepprl.zoo import configure

    config = configure(name, RunConfig())
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, mixture_self_weight=self_weight))
    wanted = config.to_dict()
    old = {**wanted, "model": {k: v for k, v in wanted["model"].items()
                               if k != "mixture_self_weight"}}
    assert same_training(saved_run_config(old).to_dict(), wanted) is reused
    assert same_training(saved_run_config(wanted).to_dict(), wanted)
