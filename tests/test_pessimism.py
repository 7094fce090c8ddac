"""deepprl.train.pessimism: held-out users, the learned-vs-static check, and what is served."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepprl.artifacts import build_model, run_split
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.registry import load_dataset
from deepprl.eval.headroom import grid_rewards, holdout_users, paired_by_user, user_folds
from deepprl.policy.weights import FixedWeights, simplex_grid
from deepprl.recommender import Recommender
from deepprl.train.pessimism import (
    best_static,
    check_environment,
    cross_fitted_check,
    policy_check,
    serves,
    stage2_users,
)

CONFIG = RunConfig(dataset={"name": "simulator", "n_users": 30, "n_items": 30,
                            "events_per_user": 20},
                   train=TrainConfig(epochs=1), policy=PolicyConfig(grid_steps=4),
                   eval=EvalConfig(k=3, max_events=400))


@pytest.fixture(scope="module")
def recommender() -> Recommender:
    data = load_dataset(CONFIG.dataset)
    torch.manual_seed(0)
    return Recommender(build_model(CONFIG, data), FixedWeights.equal(data.n_objectives), data)


def test_stage2_users_split_the_pool_by_whole_users(recommender: Recommender) -> None:
    data = recommender.data
    split = run_split(data, CONFIG)
    learn, check = stage2_users(data, split, CONFIG)
    np.testing.assert_array_equal(learn | check, split.train | split.valid)
    assert not (learn & check).any()
    assert not np.intersect1d(data.user[learn], data.user[check]).size
    assert len(np.unique(data.user[check])) == 6  # 20% of 30 users


def test_best_static_is_the_best_grid_point(recommender: Recommender) -> None:
    data = recommender.data
    learn, _ = stage2_users(data, run_split(data, CONFIG), CONFIG)
    env = check_environment(recommender, data, learn, CONFIG)
    grid = simplex_grid(data.n_objectives, 4)
    means = grid_rewards(env.y_hat, env.reward, env.valid, grid, 3).mean(0)
    assert float(means.max()) == pytest.approx(float(means[
        (grid == best_static(env, CONFIG)).all(1)].max()))


def test_a_policy_equal_to_the_static_alpha_gains_nothing_and_falls_back(
        recommender: Recommender) -> None:
    data = recommender.data
    learn, check = stage2_users(data, run_split(data, CONFIG), CONFIG)
    static = best_static(check_environment(recommender, data, learn, CONFIG), CONFIG)
    recommender.policy = FixedWeights(static)
    result = policy_check(recommender, data, learn, check, CONFIG)
    assert result["checked"] and result["gain"] == pytest.approx(0.0, abs=1e-6)
    assert result["learned"] == pytest.approx(result["static"], abs=1e-6)
    assert result["static_weights"] == pytest.approx(static.tolist())
    assert result["users"] == 6 and result["events"] > 0
    assert serves(result, "static") == "static"
    assert serves(result, "none") == "learned"


def test_worse_policy_is_caught(recommender: Recommender) -> None:
    data = recommender.data
    learn, check = stage2_users(data, run_split(data, CONFIG), CONFIG)
    env = check_environment(recommender, data, check, CONFIG)
    grid = simplex_grid(data.n_objectives, 4)
    means = grid_rewards(env.y_hat, env.reward, env.valid, grid, 3).mean(0)
    recommender.policy = FixedWeights(grid[int(means.argmin())])  # the worst alpha there
    result = policy_check(recommender, data, learn, check, CONFIG)
    assert result["gain"] < 0
    assert serves(result, "static") == "static"


def test_serves_learned_only_on_a_positive_lower_bound() -> None:
    assert serves({"checked": True, "gain_lower_bound": 0.01}, "static") == "learned"
    assert serves({"checked": True, "gain_lower_bound": 0.0}, "static") == "static"
    assert serves({"checked": True, "gain_lower_bound": float("nan")}, "static") == "static"
    assert serves({"checked": False}, "static") == "static"
    with pytest.raises(ValueError, match=r"policy\.fallback"):
        serves({"checked": True}, "sometimes")


def test_user_folds_put_every_user_in_exactly_one_fold() -> None:
    user = np.repeat(np.arange(23), 3)
    fold = user_folds(user, 5, seed=4)
    assert set(fold.tolist()) == set(range(5))
    per_user = {u: set(fold[user == u].tolist()) for u in range(23)}
    assert all(len(f) == 1 for f in per_user.values())  # a user is never split
    sizes = np.bincount([next(iter(f)) for f in per_user.values()])
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(fold, user_folds(user, 5, seed=4))
    assert len(set(user_folds(user[:6], 5, seed=0).tolist())) == 2  # capped at 2 users


GRID = simplex_grid(2, 2)  # (0, 1), (0.5, 0.5), (1, 0)


def _two_kinds(n_users: int = 30, events: int = 4) -> tuple[torch.Tensor, np.ndarray,
                                                            np.ndarray]:
    """Grid rewards [E, 3] of users of feature f in {0, 1}, 4 in 5 of them "plain": the
    vertex of f earns 1.1, the middle 1.0, the other vertex 0.8; the rest "hidden": both
    vertices 0.88, the middle 1.0. The best static alpha is the middle (1.0 against
    0.936 at either vertex); a learner that picks f's vertex gains exactly +0.1 on each
    plain user and -0.12 on each hidden one: +0.056 a user on average."""
    user = np.repeat(np.arange(n_users), events)
    feature = user % 2
    hidden = (user // 2) % 5 == 4  # 3 of every 15 users of each feature
    rewards = torch.empty(len(user), 3)
    rewards[:, 1] = 1.0
    own = torch.where(torch.from_numpy(hidden), 0.88, 1.1)
    other = torch.where(torch.from_numpy(hidden), 0.88, 0.8)
    f = torch.from_numpy(feature).bool()
    rewards[:, 2] = torch.where(f, own, other)  # (1, 0) is feature 1's vertex
    rewards[:, 0] = torch.where(f, other, own)
    return rewards, user, feature


def _feature_learner(rewards: torch.Tensor, feature: np.ndarray):  # type: ignore[no-untyped-def]
    """A tabular full-information learner: per feature value, the grid point with the
    best mean reward on the learning rows."""
    def fit(learn: torch.Tensor, held: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        best = {v: int(rewards[learn][feature[learn.numpy()] == v].mean(0).argmax())
                for v in (0, 1)}
        return torch.tensor([best[int(v)] for v in feature[held.numpy()]]), {}
    return fit


def _all_folds(fit):  # type: ignore[no-untyped-def]
    """A per-fold learner as cross_fitted_check's fit_folds (all folds at once)."""
    return lambda folds: [fit(learn, held) for learn, held in folds]


@pytest.mark.parametrize("seed", range(8))
def test_cross_fitting_serves_a_true_gain_that_a_20_percent_holdout_cannot_bound(
        seed: int) -> None:
    """By construction, on every seed: 30 users, per-user gains +0.1 (24 users) and
    -0.12 (6 users). Pooled over all 30 users the lower bound is +0.028; any 6 held-out
    users (a 20% holdout) bound it below zero (at best 5 plain and 1 hidden: -0.011) or
    not at all (6 plain users: no variation, NaN)."""
    rewards, user, feature = _two_kinds()
    fit = _feature_learner(rewards, feature)
    crossed = cross_fitted_check(rewards, GRID, user, 5, seed, _all_folds(fit))
    assert crossed["checked"] and crossed["folds"] == 5 and crossed["users"] == 30
    assert crossed["gain"] == pytest.approx(0.056, abs=1e-6)
    assert crossed["gain_lower_bound"] > 0.02
    assert serves(crossed, "static") == "learned"
    assert len(crossed["per_fold"]) == 5
    assert sum(f["users"] for f in crossed["per_fold"]) == 30
    assert crossed["static_weights"] == [0.5, 0.5]
    held = holdout_users(user, 0.2, seed)
    learn_rows = torch.from_numpy(np.flatnonzero(~held))
    held_rows = torch.from_numpy(np.flatnonzero(held))
    pick, _ = fit(learn_rows, held_rows)
    static = int(rewards[learn_rows].mean(0).argmax())
    single = paired_by_user(rewards[held_rows].gather(1, pick[:, None]).squeeze(1).numpy(),
                            rewards[held_rows, static].numpy(), user[held])
    assert single["users"] == 6
    assert serves({"checked": True, **single}, "static") == "static"  # the gain unbounded


def test_cross_fitting_one_user_is_unchecked() -> None:
    rewards, user, feature = _two_kinds(n_users=1)
    result = cross_fitted_check(rewards, GRID, user, 5, 0,
                                _all_folds(_feature_learner(rewards, feature)))
    assert result["checked"] is False and result["static_weights"] == [0.0, 1.0]  # its best
    assert serves(result, "static") == "static"


def test_diagnose_judges_a_cross_fitted_run_by_its_recorded_check() -> None:
    """Its served policy saw diagnose's held-out users: their gain is optimistic, so the
    verdict reads the recorded cross-fitted gain (null bound: not shown)."""
    from deepprl.diagnose import _verdict

    ceiling = {"headroom": 0.05, "learned": 0.8, "static": 0.78}
    seen = {"learned_policy": True, "gain": 0.03, "gain_lower_bound": 0.02}
    assert _verdict(seen, ceiling, 0.0)["pays"]
    crossed = {**seen, "recorded": {"folds": 5, "gain": -0.01, "gain_lower_bound": -0.02}}
    verdict = _verdict(crossed, ceiling, 0.0)
    assert not verdict["pays"] and verdict["gain"] == -0.01
    unbounded = {**seen, "recorded": {"folds": 5, "gain": 0.01, "gain_lower_bound": None}}
    assert not _verdict(unbounded, ceiling, 0.0)["pays"]
