"""deepprl.eval.headroom: grid rewards against a per-alpha loop, held-out users, the
per-user paired comparison against hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from deepprl.eval.headroom import grid_rewards, holdout_users, paired_by_user
from deepprl.eval.metrics import top_k_reward
from deepprl.policy.weights import simplex_grid


def test_grid_rewards_equal_one_alpha_at_a_time() -> None:
    gen = torch.Generator().manual_seed(0)
    y_hat = torch.rand(7, 12, 3, generator=gen)
    reward = torch.rand(7, 12, generator=gen)
    valid = torch.rand(7, 12, generator=gen) > 0.2
    grid = simplex_grid(3, 4)  # 15 points, chunked below in pieces of 4
    out = grid_rewards(y_hat, reward, valid, grid, 3, chunk=4)
    assert out.shape == (7, len(grid))
    for g, alpha in enumerate(grid):
        expect = top_k_reward(y_hat, reward, valid, alpha.expand(7, -1), 3)
        torch.testing.assert_close(out[:, g], expect)


def test_holdout_users_hold_out_whole_users() -> None:
    user = np.repeat(np.arange(20), 5)
    held = holdout_users(user, 0.2, seed=3)
    assert len(np.unique(user[held])) == 4
    assert not np.intersect1d(user[held], user[~held]).size  # a user is in or out, whole
    np.testing.assert_array_equal(held, holdout_users(user, 0.2, seed=3))
    assert holdout_users(np.zeros(3, int), 0.5, seed=0).all()  # one user: it is the holdout
    with pytest.raises(ValueError, match="held-out share"):
        holdout_users(user, 1.0, seed=0)


def test_paired_by_user_averages_per_user_first() -> None:
    user = np.array([0, 0, 0, 1, 2, 2])
    learned = np.array([1.0, 1.0, 1.0, 0.5, 0.2, 0.4])
    static = np.array([0.0, 0.0, 0.0, 0.5, 0.1, 0.1])
    out = paired_by_user(learned, static, user)
    diff = np.array([1.0, 0.0, 0.2])  # per-user mean differences
    assert out["users"] == 3
    assert out["gain"] == pytest.approx(diff.mean())
    se = diff.std(ddof=1) / np.sqrt(3)
    assert out["gain_lower_bound"] == pytest.approx(diff.mean() - stats.t.ppf(0.95, 2) * se)
    assert out["p_value"] == pytest.approx(
        stats.ttest_rel([1.0, 0.5, 0.3], [0.0, 0.5, 0.1]).pvalue)
    same = paired_by_user(static, static, user)
    assert same["gain"] == 0 and np.isnan(same["p_value"])
    with pytest.raises(ValueError, match="same length"):
        paired_by_user(learned, static[:3], user)
