"""DDPG pieces (soft updates, critic steps, exploration) and the top-K metrics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from deepprl.eval.metrics import mean_of_top, top_k_reward
from deepprl.policy.weights import Actor
from deepprl.ranking import top_k, utility
from deepprl.rl.ddpg import DDPG, Critic, Transitions, explore, soft_update

S, FC, K = 5, 3, 3


def _nets(seed: int = 0, use_context: bool = True) -> tuple[Actor, Critic]:
    torch.manual_seed(seed)
    actor = Actor(state_dim=S, context_dim=FC, n_objectives=K, hidden=16,
                  use_context=use_context)
    critic = Critic(state_dim=S, context_dim=FC, n_objectives=K, hidden=16,
                    use_context=use_context)
    return actor, critic


def _batch(n: int = 64, seed: int = 0) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    action = torch.softmax(torch.randn(n, K, generator=g), -1)
    state = torch.randn(n, S, generator=g)
    return Transitions(state=state, context=torch.randn(n, FC, generator=g), action=action,
                       reward=(action * torch.tensor([0.2, 0.5, 0.9])).sum(-1)
                       + 0.1 * state[:, 0],
                       next_state=torch.randn(n, S, generator=g),
                       next_context=torch.randn(n, FC, generator=g),
                       done=(torch.rand(n, generator=g) < 0.2).float())


# -- soft updates --------------------------------------------------------------------------

@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0])
def test_soft_update_moves_each_parameter_by_tau(tau: float) -> None:
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    with torch.no_grad():
        source.weight.copy_(torch.arange(6.0).view(2, 3))
        source.bias.copy_(torch.tensor([1.0, -2.0]))
        target.weight.copy_(-torch.ones(2, 3))
        target.bias.copy_(torch.tensor([4.0, 0.5]))
    before = copy.deepcopy(target)
    soft_update(target, source, tau)
    expected_w = tau * torch.arange(6.0).view(2, 3) + (1 - tau) * -torch.ones(2, 3)
    expected_b = tau * torch.tensor([1.0, -2.0]) + (1 - tau) * torch.tensor([4.0, 0.5])
    torch.testing.assert_close(target.weight, expected_w)
    torch.testing.assert_close(target.bias, expected_b)
    # the source is untouched, and the target moved by exactly tau of the gap
    torch.testing.assert_close(source.weight, torch.arange(6.0).view(2, 3))
    for t, b, s in zip(target.parameters(), before.parameters(), source.parameters(),
                       strict=True):
        torch.testing.assert_close(t - b, tau * (s - b))


def test_update_targets_soft_updates_both_targets() -> None:
    actor, critic = _nets()
    algo = DDPG(actor, critic, gamma=0.9, tau=0.25, actor_lr=1e-2, critic_lr=1e-2)
    with torch.no_grad():
        for p in [*actor.parameters(), *critic.parameters()]:
            p.add_(1.0)
    old_actor = [p.clone() for p in algo.actor_target.parameters()]
    old_critic = [p.clone() for p in algo.critic_target.parameters()]
    algo.update_targets()
    for t, o, s in zip(algo.actor_target.parameters(), old_actor, actor.parameters(),
                       strict=True):
        torch.testing.assert_close(t, 0.25 * s + 0.75 * o)
    for t, o, s in zip(algo.critic_target.parameters(), old_critic, critic.parameters(),
                       strict=True):
        torch.testing.assert_close(t, 0.25 * s + 0.75 * o)


# -- critic and actor steps ------------------------------------------------------------------

def _td_error(algo: DDPG, t: Transitions) -> float:
    with torch.no_grad():
        q = algo.critic(t.state, t.context, t.action)
        return float((q - algo.td_target(t)).pow(2).mean())


def _part_errors(algo: DDPG, t: Transitions) -> tuple[float, float]:
    """Squared errors of R against r and of F against the rest of the TD target."""
    with torch.no_grad():
        now, later = algo.critic.parts(t.state, t.context, t.action)
        rest = algo.td_target(t) - t.reward
        return float((now - t.reward).pow(2).mean()), float((later - rest).pow(2).mean())


@pytest.mark.parametrize("decomposed", [False, True])
def test_critic_steps_lower_the_td_error(decomposed: bool) -> None:
    actor, critic = _nets()
    algo = DDPG(actor, critic, gamma=0.9, tau=0.05, actor_lr=1e-3, critic_lr=3e-3,
                decomposed=decomposed)
    batch = _batch()
    target_before = algo.td_target(batch)
    first = _td_error(algo, batch)
    parts_first = _part_errors(algo, batch)
    returned = []
    for _ in range(50):
        returned.append(algo.critic_step(batch))  # targets frozen: no update_targets
    last = _td_error(algo, batch)
    assert returned[0] == pytest.approx(first, rel=1e-5)  # the error before the first step
    assert last < 0.5 * first, (first, last)
    assert returned[-1] < returned[0]
    torch.testing.assert_close(algo.td_target(batch), target_before, atol=0, rtol=0)
    if decomposed:  # R fits the reward and F the discounted rest, each on its own
        parts_last = _part_errors(algo, batch)
        assert parts_last[0] < 0.5 * parts_first[0], (parts_first, parts_last)
        assert parts_last[1] < 0.5 * parts_first[1], (parts_first, parts_last)


def test_td_target_follows_eq5() -> None:
    """y = r + gamma (1 - done) Q'(s', mu'(s')) with the TARGET networks: the online ones
    are moved first (right after construction they equal the targets), so a td_target that
    used the online actor or critic, or targets that share the online parameters, fail."""
    actor, critic = _nets()
    algo = DDPG(actor, critic, gamma=0.7, tau=0.05, actor_lr=1e-3, critic_lr=1e-3)
    # the targets start as copies of the online networks; keep our own copies of them
    actor_t, critic_t = copy.deepcopy(actor), copy.deepcopy(critic)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in [*actor.parameters(), *critic.parameters()]:
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    t = _batch(8)
    with torch.no_grad():
        next_q = critic_t(t.next_state, t.next_context, actor_t(t.next_state, t.next_context))
        online_q = critic(t.next_state, t.next_context, actor(t.next_state, t.next_context))
    expected = t.reward + 0.7 * (1 - t.done) * next_q
    torch.testing.assert_close(algo.td_target(t), expected)
    # the reference can tell the networks apart: online and target disagree on this batch
    online = t.reward + 0.7 * (1 - t.done) * online_q
    assert (online - expected).abs().max() > 1e-2


def test_actor_step_raises_q() -> None:
    actor, critic = _nets()
    algo = DDPG(actor, critic, gamma=0.9, tau=0.05, actor_lr=1e-2, critic_lr=1e-3)
    state, context = torch.randn(32, S), torch.randn(32, FC)
    critic_before = [p.clone() for p in critic.parameters()]
    losses = [algo.actor_step(state, context) for _ in range(30)]
    assert losses[-1] < losses[0]  # -Q went down
    for p, q in zip(critic.parameters(), critic_before, strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)  # the actor step leaves the critic


@pytest.mark.parametrize(("gamma", "tau"), [(-0.1, 0.05), (1.0, 0.05), (1.5, 0.05),
                                            (float("nan"), 0.05), (0.9, 0.0), (0.9, -0.1),
                                            (0.9, 1.01), (0.9, float("nan"))])
def test_ddpg_rejects_bad_gamma_or_tau(gamma: float, tau: float) -> None:
    actor, critic = _nets()
    with pytest.raises(ValueError, match="gamma"):
        DDPG(actor, critic, gamma=gamma, tau=tau, actor_lr=1e-3, critic_lr=1e-3)


@pytest.mark.parametrize(("gamma", "tau"), [(0.0, 1.0), (0.99, 0.001)])
def test_ddpg_accepts_boundary_values(gamma: float, tau: float) -> None:
    actor, critic = _nets()
    algo = DDPG(actor, critic, gamma=gamma, tau=tau, actor_lr=1e-3, critic_lr=1e-3)
    assert algo.gamma == gamma and algo.tau == tau


# -- exploration ---------------------------------------------------------------------------

@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_explore_stays_on_simplex(share: float) -> None:
    g = torch.Generator().manual_seed(0)
    alpha = torch.softmax(torch.randn(200, 4) * 5, -1)
    alpha[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    out = explore(alpha, share, g)
    assert out.shape == alpha.shape
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(200), atol=1e-5, rtol=0)
    if share == 0:
        torch.testing.assert_close(out, alpha, atol=0, rtol=0)
    else:
        assert (out - alpha).abs().max() > 1e-3
        # at most `share` of the mass moves
        assert ((out - alpha).abs().sum(-1) <= 2 * share + 1e-5).all()


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_explore_rejects_share_outside_unit_interval(share: float) -> None:
    with pytest.raises(ValueError, match="exploration share"):
        explore(torch.full((2, 2), 0.5), share, torch.Generator().manual_seed(0))


def test_explore_is_seeded() -> None:
    alpha = torch.full((10, 3), 1 / 3)
    a = explore(alpha, 0.5, torch.Generator().manual_seed(4))
    b = explore(alpha, 0.5, torch.Generator().manual_seed(4))
    c = explore(alpha, 0.5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().max() > 1e-4


# -- top-K metrics -------------------------------------------------------------------------

def _naive_top_k(scores: np.ndarray, valid: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for row, ok in zip(scores, valid, strict=True):
        cands = [j for j in range(len(row)) if ok[j]]
        cands.sort(key=lambda j: (-row[j], j))  # ties: lower index first
        out.append(cands[:k])
    return out


def _random_problem(seed: int, B: int = 40, C: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # coarse values make ties frequent
    y_hat = torch.randint(0, 4, (B, C, K), generator=g).float() / 4
    reward = torch.rand(B, C, generator=g)
    valid = torch.rand(B, C, generator=g) < 0.7
    valid[0] = False
    valid[0, :2] = True  # fewer valid than k
    alpha = torch.softmax(torch.randn(B, K, generator=g), -1)
    alpha[1] = torch.tensor([0.5, 0.5, 0.0])
    return {"y_hat": y_hat, "reward": reward, "valid": valid, "alpha": alpha}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_matches_naive_loop(seed: int, k: int) -> None:
    p = _random_problem(seed)
    scores = torch.randint(0, 5, p["valid"].shape,
                           generator=torch.Generator().manual_seed(seed)).float()
    idx = top_k(scores, p["valid"], k)
    assert idx.shape == (scores.shape[0], k)
    naive = _naive_top_k(scores.numpy(), p["valid"].numpy(), k)
    for b, (row, expected) in enumerate(zip(idx.tolist(), naive, strict=True)):
        assert row[: len(expected)] == expected
        # a row with fewer than k valid candidates is padded with invalid ones only
        assert not p["valid"][b, row[len(expected) :]].any()
    assert len(naive[0]) == min(k, 2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_of_one_row_equals_the_full_stable_sort(seed: int, k: int) -> None:
    # the serving path (one row, many candidates) selects then sorts; ties must still go to
    # the lower index, exactly as the batch path's full stable sort
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (3, 400), generator=g).float()  # heavy ties
    valid = torch.rand(3, 400, generator=g) < 0.8
    valid[2] = False
    valid[2, [5, 77]] = True  # fewer valid than k
    batch = top_k(scores, valid, k)
    for b in range(3):
        assert top_k(scores[b : b + 1], valid[b : b + 1], k).tolist() == [batch[b].tolist()]
    naive = _naive_top_k(scores[:1].numpy(), valid[:1].numpy(), k)
    assert top_k(scores[:1], valid[:1], k).tolist() == naive


def test_utility_is_weighted_sum() -> None:
    p = _random_problem(0)
    naive = np.array([[sum(p["alpha"][b, m] * p["y_hat"][b, c, m] for m in range(K))
                       for c in range(p["y_hat"].shape[1])] for b in range(p["y_hat"].shape[0])])
    np.testing.assert_allclose(utility(p["y_hat"], p["alpha"]).numpy(), naive, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_reward_matches_naive_loop(seed: int, k: int) -> None:
    p = _random_problem(seed)
    got = top_k_reward(p["y_hat"], p["reward"], p["valid"], p["alpha"], k)
    y, r, v, a = (p[n].numpy().astype(np.float64) for n in ("y_hat", "reward", "valid",
                                                             "alpha"))
    expected = []
    for b in range(y.shape[0]):
        scores = [sum(a[b, m] * y[b, c, m] for m in range(K)) for c in range(y.shape[1])]
        # rank on the float32 scores the implementation uses, so that ties agree
        scores32 = np.array(scores, dtype=np.float32)
        chosen = _naive_top_k(scores32[None], v[b : b + 1].astype(bool), k)[0]
        expected.append(sum(r[b, j] for j in chosen) / max(len(chosen), 1))
    np.testing.assert_allclose(got.numpy(), np.array(expected), atol=1e-6)


def test_top_k_reward_ignores_invalid_candidates() -> None:
    y_hat = torch.tensor([[[1.0], [0.9], [0.1]]])  # [1, 3, 1]
    reward = torch.tensor([[100.0, 2.0, 4.0]])
    valid = torch.tensor([[False, True, True]])
    alpha = torch.ones(1, 1)
    # the best-scored item is invalid: its reward never counts, whatever k
    assert top_k_reward(y_hat, reward, valid, alpha, 1).item() == pytest.approx(2.0)
    assert top_k_reward(y_hat, reward, valid, alpha, 3).item() == pytest.approx(3.0)


def test_mean_of_top_skips_missing_values() -> None:
    """A chosen item without a true value (NaN: not logged) is left out of the mean over the
    top-k, per event and per objective; an event with no value at all is NaN, not 0."""
    nan = np.nan
    values = np.array([[[1.0, 4.0], [nan, 2.0], [3.0, nan], [9.0, 9.0]],  # [E=2, C=4, K=2]
                       [[nan, 1.0], [nan, 3.0], [5.0, 5.0], [7.0, 7.0]]])
    idx = np.array([[0, 1, 2], [1, 0, 3]])  # [E, k=3]
    np.testing.assert_allclose(mean_of_top(values, idx), [[2.0, 3.0], [7.0, 11 / 3]])
    reward = values[..., 0]  # [E, C]
    np.testing.assert_allclose(mean_of_top(reward, idx), [2.0, 7.0])
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"):
        empty = mean_of_top(reward, np.array([[1], [2]]))
    assert np.isnan(empty[0]) and empty[1] == 5.0
