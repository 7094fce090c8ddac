"""The CLI contract (core issue §5) on a small simulator, through typer's test runner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepprl.cli import app

SMALL = ["--dataset", "simulator", "--dataset-option", "n_users=25",
         "--dataset-option", "n_items=30", "--dataset-option", "events_per_user=20",
         "--epochs", "1", "--policy-steps", "50", "--k", "5", "--quiet"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def run_dir(runner: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = runner.invoke(app, ["train", *SMALL, "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_the_run(run_dir: Path) -> None:
    for name in ("config.json", "seed.txt", "schema.json", "model.safetensors",
                 "actor.safetensors", "metrics.json", "train.log"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 1
    assert json.loads((run_dir / "config.json").read_text())["dataset"]["n_users"] == 25


@pytest.mark.parametrize("weights", ["learned", "equal"])
def test_evaluate_json_contract(runner: CliRunner, run_dir: Path, weights: str) -> None:
    args = ["evaluate", "--run", str(run_dir), "--json"]
    if weights == "equal":
        args += ["--weights", "equal"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["objectives"]) == {"o1", "o2"}
    assert all(math.isfinite(v) for v in out["objectives"].values())
    assert math.isfinite(out["reward"])
    assert out["k"] == 5 and out["weights"] == weights


def test_evaluate_matches_metrics_json(runner: CliRunner, run_dir: Path) -> None:
    out = json.loads(runner.invoke(app, ["evaluate", "--run", str(run_dir), "--json"]).stdout)
    saved = json.loads((run_dir / "metrics.json").read_text())["learned"]
    assert out["reward"] == saved["reward"]
    assert out["objectives"] == saved["objectives"]


def test_recommend_json(runner: CliRunner, run_dir: Path) -> None:
    result = runner.invoke(app, ["recommend", "--run", str(run_dir), "--user", "1", "--k", "3",
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["items"]) == 3
    assert sum(out["weights"].values()) == pytest.approx(1.0, abs=1e-5)
    table = runner.invoke(app, ["recommend", "--run", str(run_dir), "--user", "1"])
    assert table.exit_code == 0 and "weights" in table.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["recommend", "--user", "nobody"], "unknown user id"),
    (["recommend", "--user", "1", "--k", "0"], "k must be positive"),
    (["recommend", "--user", "1", "--candidates", "1,zz"], "unknown item id"),
    (["evaluate", "--weights", "best"], "--weights must be"),
])
def test_bad_requests_exit_2_with_a_message(runner: CliRunner, run_dir: Path,
                                            args: list[str], message: str) -> None:
    result = runner.invoke(app, [args[0], "--run", str(run_dir), *args[1:]])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "nope"], "unknown dataset"),
    (["--dataset", "simulator", "--dataset-option", "n_userz=3"], "unknown option"),
    (["--dataset", "simulator", "--dataset-option", "n_users"], "KEY=VALUE"),
    (["--dataset", "simulator", "--set", "policy.gama=0.5"], "unknown key"),
    (["--dataset", "simulator", "--set", "gamma=0.5"], "SECTION.FIELD"),
    (["--dataset", "simulator", "--set", "policy.gamma=high"], "policy.gamma must be float"),
    (["--data", "x.csv"], "--mapping"),
    (["--dataset", "simulator", "--model", "nope"], "unknown model"),
    (["--dataset", "simulator", "--epochs", "0"], "--epochs must be"),
    ([], "either a dataset name"),
])
def test_train_rejects_bad_arguments(runner: CliRunner, tmp_path: Path, args: list[str],
                                     message: str) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_missing_run_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "none"), "--json"])
    assert result.exit_code == 2
    assert "no such run directory" in result.output


def test_train_on_your_own_log(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    result = runner.invoke(app, ["train", "--data", str(EXAMPLES / "log.csv"), "--mapping",
                                 str(EXAMPLES / "mapping.toml"), "--out", str(out),
                                 "--epochs", "1", "--policy-steps", "30", "--k", "3",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(runner.invoke(app, ["evaluate", "--run", str(out), "--json"]).stdout)
    assert set(evaluated["objectives"]) == {"ctr", "watch"}
    rec = json.loads(runner.invoke(app, ["recommend", "--run", str(out), "--user", "u1",
                                         "--k", "2", "--json"]).stdout)
    assert all(item["item"].startswith("v") for item in rec["items"])


def test_listings(runner: CliRunner) -> None:
    assert "deepprl" in runner.invoke(app, ["models"]).stdout
    listed = runner.invoke(app, ["datasets"]).stdout
    assert "simulator" in listed and "movielens-100k" in listed


def test_bench_train_prints_records_per_second(runner: CliRunner) -> None:
    result = runner.invoke(app, ["bench", "train", "--dataset", "simulator", "--model",
                                 "predictor", "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == "predictor" and out["records_per_s"] > 0


def test_time_stratified_fold_as_the_split(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "fold"
    result = runner.invoke(app, ["train", *SMALL, "--out", str(out), "--set", "train.split=kfold",
                                 "--set", "train.folds=4", "--set", "train.fold=2"])
    assert result.exit_code == 0, result.output
    protocol = json.loads((out / "metrics.json").read_text())["protocol"]
    assert protocol["test_events"] == 25 * 20 // 4  # one fold of 500 events
    bad = runner.invoke(app, ["train", *SMALL, "--out", str(tmp_path / "b"),
                              "--set", "train.split=kfold", "--set", "train.fold=9"])
    assert bad.exit_code == 2 and "fold must be in" in bad.output


def test_item_level_model_from_the_cli(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "linucb"
    result = runner.invoke(app, ["train", *SMALL, "--model", "mo-linucb", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = runner.invoke(app, ["recommend", "--run", str(out), "--user", "2", "--k", "3"])
    assert table.exit_code == 0, table.output
    assert "item-level model" in table.stdout
    equal = runner.invoke(app, ["evaluate", "--run", str(out), "--weights", "equal"])
    assert equal.exit_code == 2 and "objective predictor" in equal.output


def test_bench_train_any_weighted_model(runner: CliRunner) -> None:
    result = runner.invoke(app, ["bench", "train", "--dataset", "simulator", "--model", "mmoe",
                                 "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "mmoe"
    bad = runner.invoke(app, ["bench", "train", "--dataset", "simulator", "--model", "drn"])
    assert bad.exit_code == 2 and "unknown model 'drn' for bench" in bad.output


def test_bench_train_deepprl_times_a_whole_run_beside_its_floor(runner: CliRunner) -> None:
    """bench train --model deepprl: the run's seconds (whole, stage 1, stage 2) and its floor
    (stage-1 matmul FLOPs at the best measured rate), so run / floor is one command."""
    result = runner.invoke(app, ["bench", "train", "--dataset", "simulator", "--model",
                                 "deepprl", "--epochs", "2", "--policy-steps", "50",
                                 "--dataset-option", "n_users=25", "--dataset-option",
                                 "n_items=30", "--dataset-option", "events_per_user=20",
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["run_epochs"] == 2 and out["policy_steps"] == 50
    # the run holds both stages and more (loading, checks, saving, evaluation)
    assert out["stage1_seconds"] > 0 and out["stage2_seconds"] > 0
    assert out["stage1_seconds"] + out["stage2_seconds"] < out["run_seconds"]
    assert out["run_over_floor"] == pytest.approx(out["run_seconds"] / out["floor_seconds"])
    assert out["stage2_share_of_run"] == pytest.approx(out["stage2_seconds"] / out["run_seconds"])
    floor = out["floor"]  # 2 epochs of 400 training records in batches of 256
    assert floor["batches"] == pytest.approx(2 * out["records"] / 256) and out["records"] < 500
    assert out["floor_seconds"] == pytest.approx(
        floor["batches"] * floor["flops_per_batch"] / (floor["gflops_best"] * 1e9))
    assert out["records_per_s"] == pytest.approx(
        2 * out["records"] / (out["stage1_seconds"] + out["stage2_seconds"]))


def test_training_ceiling_bounds_the_measured_rate() -> None:
    """The measured rate lies below the matmul-only bound (which drops every other cost of
    the same profiled steps); FLOPs are per batch / batch size; the peak is the best shape."""
    from deepprl.bench import training_ceiling

    out = training_ceiling("simulator", batch_size=64, batches=3)
    assert out["flops_per_record"] == out["flops_per_batch"] / 64 > 0
    assert 0 < out["matmul_share_of_step"] < 1
    assert out["records_per_s_measured"] < out["records_per_s_if_only_matmuls"]
    assert out["records_per_s_at_peak"] > 0 and out["stage1_seconds_at_peak"] > 0
    assert out["matmul_peak"]["gflops_best"] == max(out["matmul_peak"]["gflops_by_shape"].values())
    # seconds of a run's stage-1 epochs at each bound = records read / that bound's rate
    records = out["run_epochs"] * out["train_records"]
    assert out["stage1_seconds_if_only_matmuls"] == pytest.approx(
        records / out["records_per_s_if_only_matmuls"])
    assert out["stage1_seconds_at_peak"] == pytest.approx(records / out["records_per_s_at_peak"])
