"""deepprl diagnose on tiny simulator runs: every documented key, values in range, the
hindsight ceiling above static and learned, the vertex path's shape, one JSON object."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from deepprl.cli import app
from deepprl.diagnose import PATH_T, diagnose_run, sign_spread
from deepprl.diagnose import _alpha_invariant as alpha_invariant
from deepprl.train.stage2 import Trajectories

DOCS = Path(__file__).resolve().parents[1] / "docs" / "diagnose.md"
SMALL = ["--dataset", "simulator", "--dataset-option", "n_users=25",
         "--dataset-option", "n_items=30", "--dataset-option", "events_per_user=20",
         "--epochs", "1", "--policy-steps", "50", "--k", "5", "--quiet"]
SECTIONS = ("held_out", "critic", "vertex_path", "ceiling", "alpha_invariant", "predictions",
            "verdict")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _train(runner: CliRunner, out: Path, *extra: str) -> Path:
    result = runner.invoke(app, ["train", *SMALL, "--out", str(out), "--seed", "2", *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def ddpg_run(runner: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(runner, tmp_path_factory.mktemp("diag") / "ddpg", "--set",
                  "policy.algorithm=ddpg", "--set", "policy.fallback=none")
    # fallback none: a run that falls back saves only the static alpha it serves


@pytest.fixture(scope="module")
def ddpg(ddpg_run: Path) -> dict[str, Any]:
    return diagnose_run(ddpg_run, critic_steps=30)


@pytest.fixture(scope="module")
def static(runner: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = _train(runner, tmp_path_factory.mktemp("diag") / "static", "--set",
                 "policy.algorithm=static", "--set", "policy.static_trials=5")
    return diagnose_run(run)


def documented_keys() -> set[str]:
    """Every `section.key` (and top-level `key`) named in docs/diagnose.md's tables."""
    return set(re.findall(r"^\| `([a-z_.]+)`", DOCS.read_text(encoding="utf-8"), re.M))


def keys_of(result: dict[str, Any]) -> set[str]:
    return {*result} | {f"{s}.{k}" for s in SECTIONS for k in result[s]}


def test_every_key_is_documented_and_the_core_keys_are_there(
        ddpg: dict[str, Any], static: dict[str, Any]) -> None:
    documented = documented_keys()
    assert set(SECTIONS) <= documented
    for result in (ddpg, static):
        assert keys_of(result) <= documented, sorted(keys_of(result) - documented)
    core = {"held_out.gain", "held_out.gain_lower_bound", "held_out.p_value",
            "held_out.recorded", "held_out.served", "critic.per_objective",
            "vertex_path.from_vertex", "ceiling.hindsight", "ceiling.headroom",
            "alpha_invariant.share", "predictions.test_mae", "predictions.collapse_flags",
            "verdict.text", "verdict.pays"}
    assert core <= keys_of(ddpg)


def test_values_in_range_and_the_ceiling_bounds_static_and_learned(
        ddpg: dict[str, Any]) -> None:
    c = ddpg["ceiling"]
    assert c["optimistic"] is True
    for name in ("static", "learned", "hindsight", "upper_bound"):
        assert 0.0 <= c[name] <= 1.0
    assert c["hindsight"] >= c["static"] and c["hindsight"] >= c["learned"]  # by construction
    assert c["upper_bound"] >= c["hindsight"] - 1e-6  # no alpha beats ranking by the reward
    assert c["headroom"] == pytest.approx(c["hindsight"] - c["static"])
    assert 0.0 <= ddpg["alpha_invariant"]["share"] <= 1.0
    h = ddpg["held_out"]
    assert h["checked"] and h["learned_policy"] and h["users"] >= 2 and h["events"] > 0
    assert h["recorded"] == "not recorded" or isinstance(h["recorded"], dict)
    mae = ddpg["predictions"]["test_mae"]
    assert set(mae) == set(ddpg["objectives"]) and all(0 <= v <= 1 for v in mae.values())
    assert set(ddpg["predictions"]["spread_across_candidates"]) == set(ddpg["objectives"])
    attention = ddpg["predictions"]["mixture_attention"]  # the default predictor is the MoH
    K = len(ddpg["objectives"])
    assert len(attention["mean"]) == K and all(len(row) == K for row in attention["mean"])
    assert all(abs(sum(row) - 1) < 0.01 for row in attention["mean"])  # rounded to 3 digits
    assert attention["shared_tower"] is None or 0 <= attention["shared_tower"] < K


def test_critic_spread_of_a_ddpg_run(ddpg: dict[str, Any]) -> None:
    critic = ddpg["critic"]
    assert critic["applies"] and critic["refitted"] and critic["steps"] == 30
    assert "refitted the run's way" in critic["note"]
    assert set(critic["per_objective"]) == set(ddpg["objectives"])
    for value in critic["per_objective"].values():
        assert 0.0 <= value["sign_differs_share"] <= 1.0 and math.isfinite(value["mean"])
    assert math.isfinite(critic["fit_mse"]) and critic["states"] > 0


def test_vertex_path_shape(ddpg: dict[str, Any]) -> None:
    path = ddpg["vertex_path"]
    assert path["t"] == list(PATH_T)
    assert set(path["from_vertex"]) == set(ddpg["objectives"])
    ends = []
    for vertex in path["from_vertex"].values():
        assert len(vertex["reward"]) == len(PATH_T)
        assert vertex["vertex_jump"] == pytest.approx(vertex["reward"][0] - vertex["reward"][1])
        ends.append(vertex["reward"][-1])
    assert ends == pytest.approx([ends[0]] * len(ends))  # t = 1: equal weights from anywhere


def test_static_run_says_no_learned_policy(static: dict[str, Any]) -> None:
    assert static["algorithm"] == "static"
    assert static["held_out"]["learned_policy"] is False
    assert "no learned policy" in static["held_out"]["note"]
    assert static["critic"]["applies"] is False
    assert static["verdict"]["pays"] is False
    assert static["verdict"]["text"].startswith("no learned policy")


def test_json_is_one_object_and_the_table_prints(runner: CliRunner, ddpg_run: Path) -> None:
    result = runner.invoke(app, ["diagnose", "--run", str(ddpg_run), "--json",
                                 "--critic-steps", "5"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.endswith("\n")
    parsed = json.loads(result.stdout)
    assert set(SECTIONS) <= set(parsed) and parsed["critic"]["steps"] == 5
    table = runner.invoke(app, ["diagnose", "--run", str(ddpg_run), "--critic-steps", "5"])
    assert table.exit_code == 0, table.output
    assert "hindsight ceiling" in table.stdout and "verdict:" in table.stdout


def test_item_level_runs_and_bad_options_are_refused(runner: CliRunner,
                                                     tmp_path: Path) -> None:
    run = _train(runner, tmp_path / "item", "--model", "mo-linucb")
    result = runner.invoke(app, ["diagnose", "--run", str(run)])
    assert result.exit_code == 2 and "item-level baseline" in result.output
    missing = runner.invoke(app, ["diagnose", "--run", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    with pytest.raises(ValueError, match="critic-steps"):
        diagnose_run(run, critic_steps=0)


def _trajectories(y_hat: torch.Tensor) -> Trajectories:
    e, c, _ = y_hat.shape
    return Trajectories(state=torch.zeros(e, 1), context=torch.zeros(e, 1),
                        sampled=torch.arange(e), next_row=torch.arange(e),
                        done=torch.ones(e), y_hat=y_hat, reward=torch.zeros(e, c),
                        valid=torch.ones(e, c, dtype=torch.bool))


def test_alpha_invariant_share_by_hand() -> None:
    from deepprl.config import EvalConfig, PolicyConfig, RunConfig

    config = RunConfig(policy=PolicyConfig(grid_steps=4), eval=EvalConfig(k=2))
    # event 0: candidate 0 and 1 best on both objectives (every alpha picks them);
    # event 1: objective 1 prefers candidates 0, 1, objective 2 prefers 2, 3
    y_hat = torch.tensor([[[0.9, 0.9], [0.8, 0.8], [0.1, 0.2], [0.2, 0.1]],
                          [[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]]])
    result = alpha_invariant(_trajectories(y_hat), config)
    assert result == {"share": 0.5, "events": 2, "grid_points": 5}


def test_sign_spread_by_hand() -> None:
    # K = 2: the component towards vertex 1 is (g1 - g2) / 2; three states push towards
    # objective 1, one the other way
    grad = torch.tensor([[3.0, 1.0], [2.0, 0.0], [5.0, 1.0], [0.0, 4.0]])
    mean, _, differs = sign_spread(grad)
    assert mean.tolist() == pytest.approx([0.5, -0.5])  # (1 + 1 + 2 - 2) / 4
    assert differs.tolist() == [0.25, 0.25]
    # K = 3: a gradient equal on every objective has no direction on the simplex
    flat, _, _ = sign_spread(torch.ones(4, 3))
    assert flat.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("algorithm", ["bandit", "dqn", "reinforce"])
def test_other_learners_are_diagnosed_without_a_critic(runner: CliRunner, tmp_path: Path,
                                                       algorithm: str) -> None:
    run = _train(runner, tmp_path / algorithm, "--set", f"policy.algorithm={algorithm}")
    result = diagnose_run(run)
    assert result["critic"] == {"applies": False,
                                "reason": f"policy.algorithm is {algorithm!r}: no critic"}
    assert result["held_out"]["learned_policy"] is True
    assert keys_of(result) <= documented_keys()
    assert result["ceiling"]["hindsight"] >= result["ceiling"]["learned"]
