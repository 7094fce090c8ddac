"""Item-level baselines: registry conformance (fit, shapes, determinism, safetensors round
trip, gradients) and the math of each method against hand computations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from conftest import assert_gradients, double
from deepprl.baselines import drn, linucb, morl, reinforce_topk
from deepprl.baselines.common import (
    LoggedEnv,
    MaskedGRU,
    Replay,
    greedy_target,
    logged_steps,
    user_candidates,
)
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_items, history_index, make_batch
from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.data.splits import Split, temporal_holdout

K_TOP = 5
SMALL: dict[str, dict[str, Any]] = {
    "mo-linucb": {"chunk_size": 64},
    "morl": {"steps": 12, "warmup": 16, "batch_size": 16, "act_batch": 16, "hidden": 16,
             "item_dim": 8, "target_every": 4, "weight_every": 3, "buffer_size": 100},
    "reinforce-topk": {"steps": 6, "batch_size": 32, "hidden": 16, "item_dim": 8},
    "drn": {"steps": 12, "warmup": 16, "batch_size": 16, "act_batch": 16, "hidden": 16,
            "item_dim": 8, "target_every": 4, "buffer_size": 100},
}
NEURAL = ("morl", "reinforce-topk", "drn")


@pytest.fixture(scope="module")
def world() -> tuple[Interactions, Split]:
    data = load_simulator(SimulatorConfig(n_users=20, n_items=30, events_per_user=15))
    return data, temporal_holdout(data)


def _fitted(name: str, data: Interactions, split: Split, *, seed: int = 0,
            build_seed: int = 0) -> tuple[nn.Module, list[dict[str, float]]]:
    entry = ITEM_POLICIES[name]
    config = dataclasses.replace(entry.config(), **SMALL[name])
    torch.manual_seed(build_seed)
    module = entry.build(config, data, 10)
    return module, entry.fit(module, data, split, config, K_TOP, seed)


def _scores(module: nn.Module, data: Interactions, split: Split) -> torch.Tensor:
    events = np.flatnonzero(split.test)[:9]
    items = torch.from_numpy(candidate_items(data, events, split.test))
    items[0, -3:] = 0  # some padding
    with torch.no_grad():
        return module(make_batch(data, history_index(data, 10)[events], events), items)


# -- conformance over the registry -------------------------------------------------------------

def test_registry_names() -> None:
    assert set(ITEM_POLICIES) == {"mo-linucb", "morl", "reinforce-topk", "drn"}
    for entry in ITEM_POLICIES.values():
        assert dataclasses.is_dataclass(entry.config) and entry.description
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.config().x = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(ITEM_POLICIES))
def test_fit_scores_shape_and_log(name: str, world: tuple[Interactions, Split]) -> None:
    data, split = world
    module, log = _fitted(name, data, split)
    assert log and all(isinstance(v, float) and np.isfinite(v) for r in log for v in r.values())
    scores = _scores(module, data, split)
    assert scores.shape == (9, data.n_items) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    assert scores[1:].std() > 0  # it ranks: not a constant


@pytest.mark.parametrize("name", sorted(ITEM_POLICIES))
def test_deterministic_under_seed(name: str, world: tuple[Interactions, Split]) -> None:
    data, split = world
    a = _scores(_fitted(name, data, split, seed=3, build_seed=1)[0], data, split)
    b = _scores(_fitted(name, data, split, seed=3, build_seed=2)[0], data, split)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    if name in NEURAL:
        c = _scores(_fitted(name, data, split, seed=4, build_seed=1)[0], data, split)
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", sorted(ITEM_POLICIES))
def test_safetensors_round_trip(name: str, world: tuple[Interactions, Split],
                                tmp_path: Path) -> None:
    data, split = world
    module, _ = _fitted(name, data, split)
    save_file(module.state_dict(), tmp_path / "m.safetensors")
    entry = ITEM_POLICIES[name]
    torch.manual_seed(99)
    fresh = entry.build(dataclasses.replace(entry.config(), **SMALL[name]), data, 10)
    before = _scores(fresh, data, split)
    fresh.load_state_dict(load_file(tmp_path / "m.safetensors"))
    after = _scores(fresh, data, split)
    torch.testing.assert_close(after, _scores(module, data, split), rtol=0, atol=0)
    assert not torch.equal(before, after)


def _morl_loss(net: nn.Module, env: LoggedEnv, rows: np.ndarray) -> torch.Tensor:
    assert isinstance(net, morl.ConditionedQ)
    items = env.candidates(rows)
    chosen = torch.from_numpy(items[:, 0])
    objectives, _ = env.outcome(rows, items[:, 0])
    nrows = env.steps.next_row[np.searchsorted(env.steps.rows, rows)]
    w = torch.tensor([[0.3, 0.7]], dtype=torch.float64).expand(len(rows), -1)
    return morl.td_loss(net, net, env.batch(rows), chosen, torch.from_numpy(objectives),
                        torch.zeros(len(rows)), env.batch(nrows),
                        torch.from_numpy(env.candidates(nrows)), [w, w.flip(1)], 0.9)


def _drn_loss(net: nn.Module, env: LoggedEnv, rows: np.ndarray) -> torch.Tensor:
    assert isinstance(net, drn.DuelingQ)
    nrows = env.steps.next_row[np.searchsorted(env.steps.rows, rows)]
    return drn.td_loss(net, net, env.batch(rows), torch.from_numpy(env.candidates(rows)),
                       torch.zeros(len(rows), dtype=torch.int64), torch.rand(len(rows)),
                       torch.zeros(len(rows)), env.batch(nrows),
                       torch.from_numpy(env.candidates(nrows)), 0.9)


def _reinforce_loss(net: nn.Module, env: LoggedEnv, rows: np.ndarray) -> torch.Tensor:
    assert isinstance(net, reinforce_topk.TopKReinforce)
    actions = torch.from_numpy(env.data.item[rows])
    return reinforce_topk.reinforce_loss(net, env.batch(rows), actions,
                                         torch.rand(len(rows)) + 0.5, k=K_TOP, cap=10.0)[0]


LOSSES: dict[str, Callable[[nn.Module, LoggedEnv, np.ndarray], torch.Tensor]] = {
    "morl": _morl_loss, "drn": _drn_loss, "reinforce-topk": _reinforce_loss}
# Parameters no loss can identify: DRN's dueling head subtracts the mean advantage over the
# valid candidates, so the one bias of the advantage's output layer (added to every
# candidate's advantage alike) cancels from Q and gets exactly zero gradient.
NOT_IDENTIFIABLE: dict[str, tuple[str, ...]] = {"drn": ("advantage.2.bias",)}


@pytest.mark.parametrize("name", NEURAL)
def test_training_loss_reaches_every_parameter(name: str, world: tuple[Interactions, Split],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data, split = world
    entry = ITEM_POLICIES[name]
    torch.manual_seed(0)
    net = entry.build(dataclasses.replace(entry.config(), **SMALL[name]), data, 10).double()
    env = LoggedEnv(data, split, history_length=10, max_candidates=0, seed=0)
    monkeypatch.setattr(env, "batch", lambda rows: double(LoggedEnv.batch(env, rows)))
    rows = env.steps.rows[env.steps.rows % 3 == 1][:24]  # histories of several lengths
    LOSSES[name](net, env, rows).backward()
    assert_gradients([(n, p.grad) for n, p in net.named_parameters()],
                     zero=NOT_IDENTIFIABLE.get(name, ()))


def test_configs_reject_bad_values(world: tuple[Interactions, Split]) -> None:
    data, split = world
    with pytest.raises(ValueError, match="aggregation"):
        linucb.build(linucb.MOLinUCBConfig(aggregation="max"), data, 10)
    with pytest.raises(ValueError, match="weights"):
        morl.build(morl.MORLConfig(weights=(1.0, -1.0)), data, 10)
    with pytest.raises(ValueError, match="gamma"):
        _fitted_with(drn.ENTRY.config(gamma=1.5), "drn", data, split)


def _fitted_with(config: Any, name: str, data: Interactions, split: Split) -> None:
    entry = ITEM_POLICIES[name]
    entry.fit(entry.build(config, data, 10), data, split, config, K_TOP, 0)


# -- MO-LinUCB ----------------------------------------------------------------------------------

def test_ucb_against_hand_computation() -> None:
    a = torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 4.0], [0.0, 4.0]], dtype=torch.float64)  # K = 2
    x = torch.tensor([1.0, 1.0], dtype=torch.float64)
    theta = torch.linalg.solve(a, b.T).T  # [[1, 1], [0, 1]]
    out = linucb.linucb_scores(x, torch.linalg.inv(a), theta, beta=2.0)
    width = (1 / 2 + 1 / 4) ** 0.5  # x'A^-1 x = 0.75
    torch.testing.assert_close(out, torch.tensor([2 + 2 * width, 1 + 2 * width],
                                                 dtype=torch.float64))


def test_linucb_structured_ucb_matches_dense_algebra(world: tuple[Interactions, Split]
                                                     ) -> None:
    data, split = world
    config = linucb.MOLinUCBConfig(beta=0.7, ridge=0.5, chunk_size=50)
    module = linucb.build(config, data, 10)
    linucb.fit(module, data, split, config, K_TOP, 0)
    rows = np.flatnonzero(split.train)
    users, ctx = torch.from_numpy(data.user[rows]), torch.from_numpy(data.context[rows])
    x = module.design(users, ctx, torch.from_numpy(data.item[rows])[:, None])[:, 0]
    A, b = module.dense()  # the sequential updates sum to lambda I + sum x x', sum y x
    torch.testing.assert_close(A, 0.5 * torch.eye(A.shape[0], dtype=torch.float64) + x.T @ x)
    torch.testing.assert_close(b, torch.from_numpy(data.objectives[rows]).double().T @ x)
    events = np.flatnonzero(split.test)[:6]
    items = torch.from_numpy(candidate_items(data, events, split.test))
    users, ctx = torch.from_numpy(data.user[events]), torch.from_numpy(data.context[events])
    dense = linucb.linucb_scores(module.design(users, ctx, items), torch.linalg.inv(A),
                                 torch.linalg.solve(A, b.T).T, 0.7)
    torch.testing.assert_close(module.ucb(users, ctx, items).double(), dense,
                               rtol=1e-5, atol=1e-5)


def test_ggi_against_hand_computation() -> None:
    w = linucb.ggi_weights((), 3)
    torch.testing.assert_close(w, torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=torch.float64))
    v = torch.tensor([0.2, 0.9, 0.5], dtype=torch.float64)
    # ascending (0.2, 0.5, 0.9) with weights (4, 2, 1) / 7
    torch.testing.assert_close(linucb.ggi(v, w), torch.tensor((0.8 + 1.0 + 0.9) / 7,
                                                              dtype=torch.float64))
    # user weights are applied in decreasing order; a balanced item beats a lopsided one
    torch.testing.assert_close(linucb.ggi_weights((0.25, 0.75), 2),
                               torch.tensor([0.75, 0.25], dtype=torch.float64))
    two = linucb.ggi_weights((), 2)
    pair = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    g = linucb.ggi(pair, two)
    assert g[0] > g[1] and (pair @ torch.tensor([0.5, 0.5], dtype=torch.float64)).unique()\
        .numel() == 1


# -- REINFORCE with top-K correction ------------------------------------------------------------

def test_topk_correction_and_capped_weight() -> None:
    pi = torch.tensor([0.1, 0.5, 0.0])
    torch.testing.assert_close(reinforce_topk.topk_correction(pi, 3),
                               torch.tensor([3 * 0.81, 3 * 0.25, 3.0]))
    torch.testing.assert_close(reinforce_topk.topk_correction(pi, 1), torch.ones(3))
    # lambda_K is d alpha / d pi for alpha = 1 - (1 - pi)^K
    p = torch.tensor(0.3, requires_grad=True)
    (1 - (1 - p) ** 4).backward()
    assert p.grad is not None
    torch.testing.assert_close(p.grad, reinforce_topk.topk_correction(p.detach(), 4))
    weights = reinforce_topk.capped_importance(torch.tensor([0.2, 0.2, 0.01]),
                                               torch.tensor([0.01, 0.1, 0.02]), cap=10.0)
    torch.testing.assert_close(weights, torch.tensor([10.0, 2.0, 0.5]))


def test_discounted_returns_against_naive_loop() -> None:
    rng = np.random.default_rng(0)
    reward, done = rng.random(12), np.zeros(12, dtype=bool)
    done[[4, 11]] = True
    got = reinforce_topk.discounted_returns(reward, done, 0.8)
    for t in range(12):
        end = 4 if t <= 4 else 11
        expected = sum(0.8 ** (j - t) * reward[j] for j in range(t, end + 1))
        assert got[t] == pytest.approx(expected)


# -- double DQN, dueling, DER -------------------------------------------------------------------

def test_double_dqn_target_against_hand_computation() -> None:
    online = torch.tensor([[1.0, 5.0, 3.0], [2.0, 0.0, 9.0]])  # picks a* = [1, 0]: col 2 of
    valid = torch.tensor([[True, True, True], [True, True, False]])  # row 1 is padding
    target = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])
    y = greedy_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), 0.5, online,
                      target, valid)
    torch.testing.assert_close(y, torch.tensor([1 + 0.5 * 20, 2 + 0.5 * 40]))  # not max(30)
    done = greedy_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), 0.5, online,
                         target, valid)
    torch.testing.assert_close(done, torch.tensor([11.0, 2.0]))
    # vector rewards (MORL): the target network's vector at a*
    vec = greedy_target(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2), 0.5, online,
                        torch.stack([target, -target], dim=-1), valid)
    torch.testing.assert_close(vec, torch.tensor([[11.0, -10.0], [20.0, -19.0]]))


def test_dueling_head_is_mean_centred() -> None:
    q = drn.dueling(torch.tensor([1.0, -2.0]), torch.tensor([[1.0, 2.0, 3.0, 100.0],
                                                             [4.0, 0.0, 0.0, 0.0]]),
                    torch.tensor([[True, True, True, False], [True, True, False, False]]))
    torch.testing.assert_close(q[0, :3], torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(q[1, :2], torch.tensor([0.0, -4.0]))
    valid_mean = torch.tensor([q[0, :3].mean(), q[1, :2].mean()])
    torch.testing.assert_close(valid_mean, torch.tensor([1.0, -2.0]))  # = V(s)


def test_activeness_term() -> None:
    got = drn.activeness(np.array([0.0, 24.0, 48.0, np.inf]), 24.0)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.25, 0.0])


def test_crowding_distance_and_diverse_eviction() -> None:
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 3.0], [4.0, 4.0]])
    torch.testing.assert_close(morl.crowding_distance(pts),
                               torch.tensor([float("inf"), 1.25, 1.5, float("inf")]))
    assert sorted(morl.diverse(pts, 3).tolist()) == [0, 2, 3]
    replay = Replay(3, 2, evict=morl.diverse)
    replay.add(row=torch.arange(4), item=torch.arange(4), reward=pts,
               next_row=torch.arange(4), done=torch.zeros(4))
    assert sorted(replay.store["row"].tolist()) == [0, 2, 3]
    fifo = Replay(3, 2)
    fifo.add(row=torch.arange(4), item=torch.arange(4), reward=pts, next_row=torch.arange(4),
             done=torch.zeros(4))
    assert fifo.store["row"].tolist() == [1, 2, 3]


# -- shared plumbing ----------------------------------------------------------------------------

def test_logged_steps_and_candidates(world: tuple[Interactions, Split]) -> None:
    data, split = world
    steps = logged_steps(data, split)
    assert (split.train[steps.rows]).all() and len(steps.rows) == split.train.sum()
    same = data.user[steps.next_row] == data.user[steps.rows]
    assert same.all() and (steps.next_row[~steps.done] > steps.rows[~steps.done]).all()
    assert (steps.next_row[steps.done] == steps.rows[steps.done]).all()
    assert steps.done.sum() == len(np.unique(data.user[steps.rows]))
    table = user_candidates(data, split, max_candidates=0, seed=0)
    assert table.shape == (data.n_users + 1, data.n_items) and (table[0] == 0).all()


def test_masked_gru_ignores_left_padding() -> None:
    torch.manual_seed(0)
    gru = MaskedGRU(3, 4)
    x = torch.randn(1, 5, 3)
    mask = torch.tensor([[False, False, True, True, True]])
    padded = gru(x, mask)
    torch.testing.assert_close(padded, gru(x[:, 2:], torch.ones(1, 3, dtype=torch.bool)))
    torch.testing.assert_close(gru(x, torch.zeros(1, 5, dtype=torch.bool)), torch.zeros(1, 4))


def test_behaviour_head_does_not_train_the_state(world: tuple[Interactions, Split]) -> None:
    data, split = world
    torch.manual_seed(0)
    net = reinforce_topk.build(reinforce_topk.ReinforceTopKConfig(hidden=16, item_dim=8),
                               data, 10)
    rows = np.flatnonzero(split.train)[:16]
    _, log_beta = net.log_probs(net.state(make_batch(data, history_index(data, 10)[rows],
                                                     rows)))
    (-log_beta.gather(1, torch.from_numpy(data.item[rows])[:, None]).mean()).backward()
    assert net.beta_head.weight.grad is not None
    for pname, p in net.named_parameters():
        if not pname.startswith("beta_head"):
            assert p.grad is None or not p.grad.any(), pname


@pytest.mark.parametrize("name", ["mo-linucb", "morl"])
def test_reweighting_without_retraining(name: str, world: tuple[Interactions, Split]) -> None:
    data, split = world
    module, _ = _fitted(name, data, split)
    entry = ITEM_POLICIES[name]
    config = dataclasses.replace(entry.config(), **SMALL[name], weights=(0.9, 0.1))
    reweighted = entry.build(config, data, 10)
    reweighted.load_state_dict(module.state_dict())
    a, b = _scores(module, data, split), _scores(reweighted, data, split)
    assert not torch.allclose(a, b)
    if isinstance(reweighted, morl.ConditionedQ):  # scores are w'Q(s, a, w) at the new w
        events = np.flatnonzero(split.test)[:9]
        batch = make_batch(data, history_index(data, 10)[events], events)
        items = torch.from_numpy(candidate_items(data, events, split.test))
        items[0, -3:] = 0
        w = torch.tensor([[0.9, 0.1]]).expand(9, -1)
        with torch.no_grad():
            q = reweighted.q(reweighted.state(batch), items, w)
        torch.testing.assert_close(b, (q * w[:, None]).sum(-1))


@pytest.mark.parametrize("aggregation", ["ggi", "weighted"])
def test_linucb_reaggregation_equals_a_rebuilt_module(world: tuple[Interactions, Split],
                                                      aggregation: str) -> None:
    """Tuning and frontier sweeps re-aggregate per-objective UCBs instead of rebuilding the
    module per weight vector: the scores must be those of the rebuilt module."""
    data, split = world
    entry = ITEM_POLICIES["mo-linucb"]
    base = dataclasses.replace(entry.config(), **SMALL["mo-linucb"], aggregation=aggregation)
    module = entry.build(base, data, 10)
    entry.fit(module, data, split, base, K_TOP, 0)
    events = np.flatnonzero(split.test)[:9]
    items = torch.from_numpy(candidate_items(data, events, split.test))
    batch = make_batch(data, history_index(data, 10)[events], events)
    with torch.no_grad():
        values = module.objective_scores(batch, items)
        for weights in ((0.7, 0.3), (0.5, 0.5), (1.0, 0.0)):
            rebuilt = entry.build(dataclasses.replace(base, weights=weights), data, 10)
            rebuilt.load_state_dict(module.state_dict())
            assert torch.equal(module.aggregate_with(values, weights), rebuilt(batch, items))
