"""The discrete-choice simulator: distributions, exact objective formulas, oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from deepprl.data.interactions import Interactions
from deepprl.data.simulator import (
    SimulatorConfig,
    SimulatorValuer,
    SimulatorWorld,
    load_simulator,
    make_world,
)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def world_of(data: Interactions) -> SimulatorWorld:
    assert isinstance(data.valuer, SimulatorValuer)
    return data.valuer.world


def hours_of(time: np.ndarray) -> np.ndarray:
    return (time / 3600.0) % 24.0


@pytest.fixture(scope="module")
def small() -> Interactions:
    return load_simulator(SimulatorConfig(n_users=30, n_items=40, events_per_user=25, seed=7))


@pytest.fixture(scope="module")
def many_users() -> Interactions:
    return load_simulator(SimulatorConfig(n_users=2000, n_items=200, events_per_user=20,
                                          seed=11))


# -- distributions -------------------------------------------------------------------------

def test_item_relevance_is_normal_half_one() -> None:
    world = make_world(SimulatorConfig(n_users=20, n_items=20_000, events_per_user=5, seed=3))
    r = world.r[1:]
    assert world.r[0] == 0.0  # padding row
    assert r.shape == (20_000,)
    # std error of the mean is 1/sqrt(20000) ~ 0.007; of the std ~ 0.005
    assert r.mean() == pytest.approx(0.5, abs=0.03)
    assert r.std() == pytest.approx(1.0, abs=0.03)
    # normal, not e.g. uniform: the shape passes a KS test against N(0.5, 1)
    assert stats.kstest(r, "norm", args=(0.5, 1.0)).statistic < 0.02


def test_eta_has_variance_point_one() -> None:
    world = make_world(SimulatorConfig(n_users=20, n_items=20_000, events_per_user=5, seed=3))
    eta = world.eta[1:, 1:]
    assert eta.shape == (20, 20_000)
    assert np.all(world.eta[0] == 0.0)
    assert np.all(world.eta[:, 0] == 0.0)
    assert eta.mean() == pytest.approx(0.0, abs=0.005)
    assert eta.var() == pytest.approx(0.1, abs=0.003)  # variance 0.1, not std 0.1
    assert eta.std() == pytest.approx(math.sqrt(0.1), abs=0.005)


def test_trade_off_c_is_roughly_uniform(many_users: Interactions) -> None:
    o = many_users.objectives.astype(np.float64)
    c = (1.0 - o[:, 1]) / o[:, 0]
    assert np.all((c > 0) & (c < 1))
    assert stats.kstest(c, "uniform").statistic < 0.06
    q = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(np.quantile(c, q), q, atol=0.1)


def test_objectives_in_unit_interval(many_users: Interactions) -> None:
    o = many_users.objectives
    assert np.all((o > 0) & (o < 1))
    # the objectives conflict: o2 falls as o1 rises
    assert np.corrcoef(o[:, 0], o[:, 1])[0, 1] < -0.2


# -- exact formulas ------------------------------------------------------------------------

def test_o1_is_sigmoid_of_r_plus_eta(small: Interactions) -> None:
    world = world_of(small)
    expected = 1.0 / (1.0 + np.exp(-(world.r[small.item] + world.eta[small.user, small.item])))
    np.testing.assert_allclose(small.objectives[:, 0], expected, rtol=1e-6)


def c_by_hand(world: SimulatorWorld, user: int, item: int, hour: float, k: int) -> float:
    """The docstring's formula for c_uik(h), one scalar at a time."""
    a, b = world.a[k], world.b[k]
    phi = (math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24))
    num = float(a @ world.x[user]) + b[0] * phi[0] + b[1] * phi[1] + world.xi[k, item]
    norm = math.sqrt(float(a @ a) + float(b @ b) + 1.0)
    return sigmoid(1.7 * num / norm)


def w_by_hand(world: SimulatorWorld, user: int, hour: float) -> np.ndarray:
    phi = np.array([math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24)])
    d = world.x.shape[1]
    logits = world.config.preference_strength * (world.P @ world.x[user] + world.Q @ phi)
    logits = logits / math.sqrt(d + 2)
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_conflicting_objectives_are_one_minus_c_o1(n_objectives: int) -> None:
    data = load_simulator(SimulatorConfig(n_users=10, n_items=15, events_per_user=12,
                                          n_objectives=n_objectives, seed=5))
    world = world_of(data)
    assert data.objectives.shape == (120, n_objectives)
    assert data.objective_names == tuple(f"o{k + 1}" for k in range(n_objectives))
    hours = hours_of(data.time)
    for e in range(0, data.n_events, 7):
        u, i, h = int(data.user[e]), int(data.item[e]), float(hours[e])
        o1 = sigmoid(world.r[i] + world.eta[u, i])
        assert data.objectives[e, 0] == pytest.approx(o1, rel=1e-5)
        for k in range(1, n_objectives):
            c = c_by_hand(world, u, i, h, k - 1)
            assert data.objectives[e, k] == pytest.approx(1.0 - c * o1, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_reward_is_true_weighted_sum(n_objectives: int) -> None:
    data = load_simulator(SimulatorConfig(n_users=10, n_items=15, events_per_user=12,
                                          n_objectives=n_objectives, seed=5))
    world = world_of(data)
    hours = hours_of(data.time)
    for e in range(0, data.n_events, 5):
        w = w_by_hand(world, int(data.user[e]), float(hours[e]))
        assert data.reward[e] == pytest.approx(float(w @ data.objectives[e]), abs=1e-5)
    events = np.arange(data.n_events)
    weights = data.valuer.oracle_weights(data, events)  # type: ignore[union-attr]
    assert weights.shape == (data.n_events, n_objectives)
    np.testing.assert_allclose(data.reward, (weights * data.objectives).sum(1), atol=1e-5)


def test_preference_on_simplex_and_depends_on_user_and_hour(small: Interactions) -> None:
    world = world_of(small)
    events = np.arange(small.n_events)
    w = small.valuer.oracle_weights(small, events)  # type: ignore[union-attr]
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    # against the formula, one event at a time
    hours = hours_of(small.time)
    for e in range(0, small.n_events, 37):
        np.testing.assert_allclose(w[e], w_by_hand(world, int(small.user[e]), float(hours[e])),
                                   atol=1e-12)
    # same hour, different users -> different weights (user features matter)
    users = np.arange(1, 31)
    at_noon = world.preference(users, np.full(30, 12.0))
    assert np.ptp(at_noon[:, 0]) > 0.2
    # same user, different hours -> different weights (context matters)
    over_day = world.preference(np.full(24, 3), np.arange(24.0))
    assert np.ptp(over_day[:, 0]) > 0.05
    # but a user at the same hour on another day has the same weights
    np.testing.assert_allclose(world.preference(np.array([3]), np.array([5.0])),
                               world.preference(np.array([3]), np.array([5.0 + 24.0])),
                               atol=1e-12)


def test_preference_strength_zero_is_uniform() -> None:
    data = load_simulator(SimulatorConfig(n_users=5, n_items=10, events_per_user=4,
                                          n_objectives=3, preference_strength=0.0))
    w = data.valuer.oracle_weights(data, np.arange(data.n_events))  # type: ignore[union-attr]
    np.testing.assert_allclose(w, 1 / 3, atol=1e-12)
    np.testing.assert_allclose(data.reward, data.objectives.mean(1), atol=1e-6)


def test_candidate_values_reproduce_the_log(small: Interactions) -> None:
    events = np.arange(small.n_events)
    items = np.c_[small.item, np.zeros(small.n_events, dtype=np.int64)]
    objectives, reward = small.candidate_values(events, items)
    assert objectives.shape == (small.n_events, 2, 2)
    np.testing.assert_allclose(objectives[:, 0], small.objectives, atol=1e-6)
    np.testing.assert_allclose(reward[:, 0], small.reward, atol=1e-6)
    assert np.isnan(objectives[:, 1]).all()
    assert np.isnan(reward[:, 1]).all()


def test_candidate_values_of_unlogged_items(small: Interactions) -> None:
    world = world_of(small)
    e = 3
    u = int(small.user[e])
    unseen = sorted(set(range(1, 41)) - set(small.item[small.user_events(u)].tolist()))
    assert unseen  # 25 of 40 items were logged
    objectives, reward = small.candidate_values(np.array([e]), np.array([unseen]))
    assert np.isfinite(objectives).all()
    assert np.isfinite(reward).all()
    for j, i in enumerate(unseen):
        o1 = sigmoid(world.r[i] + world.eta[u, i])
        assert objectives[0, j, 0] == pytest.approx(o1, rel=1e-5)


# -- log structure and seeding -------------------------------------------------------------

def test_default_log_is_paper_sized() -> None:
    data = load_simulator()
    assert data.n_events == 10_000
    assert data.n_users == 100
    assert data.n_items == 100
    # every user meets every item exactly once
    pairs = data.user * 1000 + data.item
    assert len(np.unique(pairs)) == 10_000


def test_log_structure(small: Interactions) -> None:
    assert small.n_events == 30 * 25
    np.testing.assert_array_equal(small.user, np.repeat(np.arange(1, 31), 25))
    for u in range(1, 31):
        ev = small.user_events(u)
        assert len(np.unique(small.item[ev])) == 25  # distinct items
        assert np.all(np.diff(small.time[ev]) >= 0)
    assert small.time.min() >= 0
    assert small.time.max() <= 60 * 86400
    assert small.item.min() >= 1
    assert small.item.max() <= 40
    assert small.user_features.shape == (31, 4)
    assert small.item_features.shape == (41, 3)


def test_same_seed_same_log_different_seed_different() -> None:
    cfg = SimulatorConfig(n_users=8, n_items=12, events_per_user=6, seed=42)
    a, b = load_simulator(cfg), load_simulator(cfg)
    for name in ("user", "item", "time", "objectives", "reward", "context", "user_features",
                 "item_features"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = load_simulator(SimulatorConfig(n_users=8, n_items=12, events_per_user=6, seed=43))
    assert not np.array_equal(a.item, c.item)
    assert not np.array_equal(a.time, c.time)
    assert not np.allclose(a.objectives, c.objectives)
    assert not np.allclose(world_of(a).r, world_of(c).r)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_objectives": 1}, "n_objectives must be >= 2, got 1"),
    ({"n_objectives": 0}, "n_objectives must be >= 2, got 0"),
    ({"n_items": 10, "events_per_user": 11}, r"events_per_user must be in \[1, n_items=10\]"),
    ({"events_per_user": 0}, r"events_per_user must be in \[1, n_items=\d+\], got 0"),
    ({"n_users": 0}, "at least 1 user and 2 items"),
    ({"n_items": 1, "events_per_user": 1}, "at least 1 user and 2 items"),
])
def test_invalid_configs(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**kwargs)


def test_invalid_config_messages() -> None:
    with pytest.raises(ValueError, match="n_objectives must be >= 2, got 1"):
        SimulatorConfig(n_objectives=1)
    with pytest.raises(ValueError, match=r"events_per_user must be in \[1, n_items=10\], got 11"):
        SimulatorConfig(n_items=10, events_per_user=11)


# -- the oracle ----------------------------------------------------------------------------

def test_oracle_ranking_beats_fixed_weights() -> None:
    data = load_simulator(SimulatorConfig(n_users=40, n_items=60, events_per_user=10, seed=2))
    events = np.arange(0, data.n_events, 4)
    items = np.broadcast_to(np.arange(1, 61), (len(events), 60))
    objectives, reward = data.candidate_values(events, items)
    top = 10

    def top_mean(score: np.ndarray) -> float:
        best = np.argsort(-score, axis=1, kind="stable")[:, :top]
        return float(np.take_along_axis(reward, best, axis=1).mean())

    oracle = top_mean(reward)
    # ranking by the true weights on true objectives is the oracle ranking
    w = data.valuer.oracle_weights(data, events)  # type: ignore[union-attr]
    assert top_mean(np.einsum("eck,ek->ec", objectives, w)) == pytest.approx(oracle, abs=1e-6)
    fixed = {}
    for w0 in (0.0, 0.25, 0.5, 0.75, 1.0):
        fixed[w0] = top_mean(objectives @ np.array([w0, 1 - w0]))
        assert oracle >= fixed[w0] - 1e-9
    # and the personal preference matters: the oracle strictly beats the best fixed weights
    assert oracle > max(fixed.values()) + 1e-3
    # far above a random ranking
    rng = np.random.default_rng(0)
    assert oracle > top_mean(rng.random(reward.shape)) + 0.02
