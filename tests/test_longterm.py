"""The long-term study (Figure 11): quick mode end to end, and its volume measure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepprl.eval.pareto import dominated_hull_volume
from deepprl.experiments import Context, run_experiment


def test_dominated_hull_volume_by_hand() -> None:
    ref = np.zeros(2)
    assert dominated_hull_volume(np.array([[1.0, 1.0]]), ref) == pytest.approx(1.0)
    # polygon (0,0) (1,0) (1,.5) (.5,1) (0,1): the unit square less a corner triangle
    two = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert dominated_hull_volume(two, ref) == pytest.approx(0.875)
    # a dominated point and a point inside the hull change nothing
    more = np.vstack([two, [[0.4, 0.4], [0.7, 0.7]]])
    assert dominated_hull_volume(more, ref) == pytest.approx(0.875)


def test_longterm_quick_writes_its_report(tmp_path) -> None:
    ctx = Context(dataset="simulator", quick=True, out=tmp_path / "reports",
                  runs=tmp_path / "runs", command="deepprl experiment longterm --quick")
    md = run_experiment("longterm", ctx)
    folder = tmp_path / "reports" / "longterm"
    assert md == folder / "simulator.md"
    assert (folder / "simulator-frontiers.png").stat().st_size > 0
    text = md.read_text()
    assert text.splitlines()[2] == "Made by: `deepprl experiment longterm --quick`"
    payload = json.loads((folder / "simulator.json").read_text())
    checkpoints = payload["protocol"]["checkpoints"]
    for name in [*payload["methods"], *payload["references"]]:
        assert len(payload["volume"][name]) == len(checkpoints)
        assert all(v is None or v >= 0 for v in payload["volume"][name])
    oracle = payload["frontiers"]["oracle-sweep"][-1]
    assert len(oracle) == payload["protocol"]["grid"] + 1  # one point per alpha
    assert len(payload["frontiers"]["deepprl"][0]) == payload["protocol"]["runs"]
    # the oracle's frontier (true objectives) is never beaten by a learnt sweep's
    for c in range(len(checkpoints)):
        assert payload["volume"]["oracle-sweep"][c] >= payload["volume"]["mmoe"][c]
    assert len(payload["improvement_pct"]) == len(checkpoints)
