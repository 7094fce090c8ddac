"""The long-term study (Figure 11): quick mode end to end, and its volume measure."""

from __future__ import annotations

import dataclasses
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


def test_candidates_are_a_shared_draw_of_unconsumed_items() -> None:
    from deepprl.envs.core import Population, ResponseConfig
    from deepprl.experiments.longterm import Protocol, _Simulation, _world

    protocol = Protocol(n_users=6, n_items=30, events_per_user=10, initial=3, horizon=2,
                        candidates=5)
    truth, start = _world(protocol, 0)
    sim = _Simulation(truth, protocol, start, seed=0)
    pop = Population(truth, ResponseConfig(k=2), users=np.tile(start["users"], 2),
                     history=np.tile(start["history"], (2, 1)),
                     hist_times=np.tile(start["times"], (2, 1)),
                     start=np.tile(start["start"], 2), capacity=2, seed=0)
    items = sim.candidates(pop, 1)
    assert items.shape == (12, 5)
    assert not np.take_along_axis(pop.consumed, items, axis=1).any()
    np.testing.assert_array_equal(items[:6], items[6:])  # two weights, one draw per user
    assert not np.array_equal(items, sim.candidates(pop, 2))  # a new draw per iteration
    everything = _Simulation(truth, dataclasses.replace(protocol, candidates=0), start, 0)
    assert everything.candidates(pop, 1).shape == (12, 30)


def test_longterm_movielens_sim_quick(tmp_path) -> None:
    ctx = Context(dataset="movielens-sim", quick=True, out=tmp_path / "reports",
                  runs=tmp_path / "runs",
                  command="deepprl experiment longterm --dataset movielens-sim --quick")
    md = run_experiment("longterm", ctx)
    assert md == tmp_path / "reports" / "longterm" / "movielens-sim.md"
    text = md.read_text()
    assert "movielens-sim" in text and "unconsumed movies drawn at random" in text
    payload = json.loads(md.with_suffix(".json").read_text())
    assert payload["protocol"]["candidates"] == 40
    for name in [*payload["methods"], *payload["references"]]:
        for front in payload["frontiers"][name]:
            assert np.isfinite(front).all() and np.all(np.asarray(front) <= 1.0)
    # the runs are the offline experiments' cache: trained once, found again
    assert (tmp_path / "runs" / "quick" / "movielens-sim" / "deepprl" / "seed0"
            / "metrics.json").is_file()
    assert all(v > 0 for v in payload["volume"]["oracle-sweep"])
