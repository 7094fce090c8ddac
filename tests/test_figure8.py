"""Figure 8's pure parts: the user selection rule, one user's front, the distances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.eval.evaluator import EvalSet
from deepprl.experiments.figure8 import (
    distances,
    preference_weights,
    restrict,
    select_users,
    user_front,
)
from deepprl.experiments.frontier import weight_grid


def test_select_users_takes_the_quantiles_of_the_eligible_users() -> None:
    users = np.arange(1, 11)
    weight = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.05, 0.6, 0.4, 0.8])
    counts = np.full(10, 12)
    counts[[2, 6]] = 3  # users 3 and 7: too few events
    # eligible by weight: 2, 6, 4, 9, 8, 5, 10, 1; quantiles 1/8..7/8 of 8 -> ranks 1, 3, 4, 6
    assert select_users(users, weight, counts, min_events=10).tolist() == [6, 9, 8, 10]


def test_select_users_breaks_ties_by_user_and_refuses_too_few() -> None:
    users = np.array([5, 3, 9, 1, 7])
    picked = select_users(users, np.zeros(5), np.full(5, 10), n=2, min_events=10)
    assert picked.tolist() == [3, 7]  # ranks 1 and 3 of 1, 3, 5, 7, 9
    with pytest.raises(ValueError, match="at least 10 test events; only 1"):
        select_users(users, np.zeros(5), np.array([10, 0, 0, 0, 0]), min_events=10)


def _eval_set(rng: np.random.Generator, events: int = 6, candidates: int = 5) -> EvalSet:
    objectives = rng.random((events, candidates, 2)).astype(np.float32)
    w = rng.dirichlet([1.0, 1.0], size=events)
    reward = np.einsum("eck,ek->ec", objectives, w).astype(np.float32)
    return EvalSet(events=np.arange(events), items=np.ones((events, candidates), np.int64),
                   valid=np.ones((events, candidates), bool), objectives=objectives,
                   reward=reward, excluded=0, total=events)


def test_user_front_is_computed_on_that_users_events_only() -> None:
    rng = np.random.default_rng(0)
    es, rows = _eval_set(rng), np.array([1, 3, 4])
    front, optimum = user_front(es, rows, k=1)
    brute = []
    for a in weight_grid(2):  # rank each of the user's events by a . o, keep the best
        best = [es.objectives[e, np.argmax(es.objectives[e] @ a)] for e in rows]
        brute.append([*np.mean(best, 0), np.mean([es.reward[e, np.argmax(
            es.objectives[e] @ a)] for e in rows])])
    np.testing.assert_allclose(front, brute, rtol=1e-6)
    top = [np.argmax(es.reward[e]) for e in rows]
    np.testing.assert_allclose(optimum, [*es.objectives[rows, top].mean(0),
                                         es.reward[rows, top].mean()], rtol=1e-6)
    other = dataclasses.replace(es, objectives=es.objectives.copy(), reward=es.reward.copy())
    other.objectives[[0, 2, 5]] = rng.random((3, 5, 2))  # another user's events change
    other.reward[[0, 2, 5]] = 1.0
    front2, optimum2 = user_front(other, rows, k=1)
    np.testing.assert_array_equal(front2, front)
    np.testing.assert_array_equal(optimum2, optimum)
    assert restrict(es, rows).total == 3


def test_preference_weights_are_the_hidden_ones_or_the_revealed_best_alpha() -> None:
    data = load_simulator(SimulatorConfig(n_users=3, n_items=12, events_per_user=4))
    events = np.arange(data.n_events)
    items = np.broadcast_to(np.arange(1, 13), (len(events), 12)).copy()
    objectives, reward = data.candidate_values(events, items)
    es = EvalSet(events=events, items=items, valid=np.ones_like(items, bool),
                 objectives=objectives, reward=reward, excluded=0, total=len(events))
    assert data.valuer is not None
    hidden = preference_weights(data, es, k=3)
    np.testing.assert_array_equal(hidden, data.valuer.oracle_weights(data, events)[:, 0])
    revealed = preference_weights(dataclasses.replace(data, valuer=None), es, k=3)
    grid = weight_grid(2)
    for e in range(len(events)):  # every alpha whose top-3 is the best top-3 of the event
        tops = [frozenset(np.argsort(-(objectives[e] @ a))[:3].tolist()) for a in grid]
        best = max(tops, key=lambda top: reward[e, sorted(top)].mean())
        tied = [a[0] for a, top in zip(grid, tops, strict=True) if top == best]
        assert revealed[e] == pytest.approx(np.mean(tied))
    assert ((revealed >= 0) & (revealed <= 1)).all()


def test_distances_to_the_users_optimum() -> None:
    view = {"optimum": np.array([0.5, 0.5, 1.0]),
            "front": np.array([[0.0, 1.0, 0.7], [1.0, 0.0, 0.7], [0.6, 0.6, 0.9]]),
            "points": {"m": np.array([[0.5, 0.2, 0.8], [0.5, 0.8, 0.9]])}}
    out = distances(view, 2)["m"]
    assert out["distance"] == pytest.approx(0.3)
    assert out["utility_fraction"] == pytest.approx(0.85)
    assert out["dominated_by_front"] == 1  # (0.6, 0.6) beats (0.5, 0.2), not (0.5, 0.8)
    np.testing.assert_allclose(out["mean"], [0.5, 0.5, 0.85])
