"""deepprl.train.pessimism: held-out users, the learned-vs-static check, and what is served."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepprl.artifacts import build_model, run_split
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.registry import load_dataset
from deepprl.eval.headroom import grid_rewards
from deepprl.policy.weights import FixedWeights, simplex_grid
from deepprl.recommender import Recommender
from deepprl.train.pessimism import (
    best_static,
    check_environment,
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
