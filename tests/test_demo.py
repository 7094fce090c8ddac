"""The demo (`make run`): its worlds are valid, its tables carry every method in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepprl.cli.common import print_table
from deepprl.cli.demo import DEMO_WORLDS, DRN_LABEL, demo_tasks, run_label, same_events
from deepprl.data.registry import dataset_spec


def _result(reward: float, names: tuple[str, ...] = ("a", "b")) -> dict[str, object]:
    return {"objectives": {n: reward / (i + 1) for i, n in enumerate(names)}, "reward": reward}


def _metrics(**protocol: int) -> dict[str, object]:
    p = {"k": 10, "test_events": 20, "evaluated_events": 18,
         "excluded_events_with_at_most_k_candidates": 2, "mean_candidates": 30.0} | protocol
    return {"protocol": p, **{m: _result(r) for m, r in
                              (("learned", 0.61), ("equal", 0.52), ("static", 0.53),
                               ("popularity", 0.54), ("oracle", 0.95))}}


def test_every_demo_world_is_a_valid_dataset_with_two_and_three_objectives() -> None:
    for name, option_sets, _ in DEMO_WORLDS:
        assert option_sets[0] == {}, f"{name}: the paper's objective set comes first"
        for options in option_sets:
            assert dataset_spec(name, options=options)["name"] == name
    assert run_label("simulator", {}) == "simulator"
    assert run_label("simulator", {"n_objectives": 3}) == "simulator-3obj"
    assert run_label("movielens-100k", {"objectives": "relevance,consistency,recency"}
                     ) == "movielens-100k-3obj"


def test_table_puts_other_runs_before_the_upper_bound(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    print_table(_metrics(), title="t", others={DRN_LABEL: _result(0.58)})
    out = capsys.readouterr().out
    order = [out.index(label) for label in ("DeepPRL", "equal weights", "best static",
                                            "popularity", "DRN", "upper bound")]
    assert order == sorted(order)
    assert "0.5800" in out


def test_rows_of_two_runs_share_a_table_only_on_the_same_events() -> None:
    assert same_events(_metrics(), _metrics())
    assert not same_events(_metrics(), _metrics(evaluated_events=17))


def test_demo_trains_drn_once_per_world_and_the_longest_first(tmp_path: Path) -> None:
    tasks = demo_tasks(tmp_path, seed=3)
    runs = [t["out"].name for t in tasks]
    assert runs[:3] == ["movielens-100k-3obj-drn", "movielens-100k-3obj", "movielens-100k"]
    assert sorted(runs[3:]) == ["simulator", "simulator-3obj", "simulator-3obj-drn",
                                "simulator-drn"]
    assert {t["seed"] for t in tasks} == {3}
    assert {t["model"] for t in tasks if t["out"].name.endswith("-drn")} == {"drn"}


def test_an_executor_that_is_not_local_is_refused_before_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepprl.cli import app

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--executor", "ray"])
    assert result.exit_code == 2 and "'processes' or 'sequential'" in result.stderr
    assert not any(tmp_path.iterdir())
