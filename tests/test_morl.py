"""MORL libraries on our environments: MO-Gymnasium's wrappers, morl-baselines' indicators
and (slow) one of its agents, CAPQL, trained on both environments."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import deepprl  # noqa: F401  (registers the environments)
from deepprl.envs.morl import simplex_weights
from deepprl.eval.pareto import hypervolume

SMALL = {"n_users": 12, "n_items": 30, "horizon": 6}
ENVS = [("deepprl/Simulator-v0", SMALL, 30), ("deepprl/MovieLensSim-v0", {"horizon": 3}, 1682)]


@pytest.mark.parametrize(("env_id", "kwargs", "n_items"), ENVS)
def test_mo_gymnasium_wrappers_step_our_environments(env_id, kwargs, n_items) -> None:
    mo_gym = pytest.importorskip("mo_gymnasium")
    from mo_gymnasium.wrappers import LinearReward, MOClipReward, MORecordEpisodeStatistics

    env = MORecordEpisodeStatistics(mo_gym.make(env_id, **kwargs), gamma=0.5)
    reward_space = env.unwrapped.reward_space
    assert reward_space.shape == (2,) and reward_space.dtype == np.float32
    assert env.unwrapped.reward_dim == 2 and env.action_space.shape == (n_items,)
    weight = np.array([0.25, 0.75], dtype=np.float32)
    scalar = LinearReward(MOClipReward(env, idx=1, min_r=0.0, max_r=0.5), weight=weight)
    scalar.action_space.seed(0)
    scalar.reset(seed=0)
    rewards, done = [], False
    while not done:
        _, reward, terminated, truncated, info = scalar.step(scalar.action_space.sample())
        vector = info["vector_reward"]
        assert vector.shape == (2,) and vector.dtype == np.float32
        assert reward_space.contains(vector) and vector[1] <= 0.5  # clipped by MOClipReward
        assert np.isclose(reward, vector @ weight, rtol=1e-6)
        rewards.append(vector)
        done = terminated or truncated
    episode = info["episode"]  # MORecordEpisodeStatistics: below the clip, so unclipped
    assert episode["l"] == kwargs["horizon"] and episode["r"].shape == (2,)
    assert episode["r"][0] == pytest.approx(np.sum(rewards, axis=0)[0], rel=1e-6)
    assert (episode["r"][1] >= np.sum(rewards, axis=0)[1] - 1e-6)
    discounts = 0.5 ** np.arange(len(rewards))
    assert episode["dr"][0] == pytest.approx(discounts @ np.array(rewards)[:, 0], rel=1e-6)


def test_mo_gymnasium_vector_env_stacks_reward_vectors() -> None:
    pytest.importorskip("mo_gymnasium")
    import gymnasium as gym
    from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

    envs = MOSyncVectorEnv([lambda: gym.make("deepprl/Simulator-v0", disable_env_checker=True,
                                             **SMALL)] * 3)
    envs.reset(seed=0)
    _, rewards, _, _, _ = envs.step(np.stack([envs.single_action_space.sample()] * 3))
    assert rewards.shape == (3, 2) and np.isfinite(rewards).all()
    assert len({tuple(r) for r in rewards.tolist()}) > 1  # three users, three responses


def test_morl_env_is_flat_and_seeded() -> None:
    pytest.importorskip("mo_gymnasium")
    from deepprl.envs.morl import mean_reward, morl_env

    env = morl_env("deepprl/Simulator-v0", **SMALL)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape and obs.ndim == 1
    assert env.observation_space.contains(obs) and np.isfinite(obs).all()
    scores = np.linspace(1, -1, SMALL["n_items"], dtype=np.float32)
    first, utility = mean_reward(env, lambda obs: scores, [0, 1])
    again = mean_reward(env, lambda obs: scores, [0, 1])
    assert first.shape == (2,) and (first.tolist(), utility) == (again[0].tolist(), again[1])
    assert first.tolist() != mean_reward(env, lambda obs: -scores, [0, 1])[0].tolist()
    assert 0 < utility < 1
    with pytest.raises(ValueError, match="seed"):
        mean_reward(env, lambda obs: scores, [])


def test_simplex_weights_grid() -> None:
    np.testing.assert_allclose(simplex_weights(2, 4), [[0, 1], [0.25, 0.75], [0.5, 0.5],
                                                       [0.75, 0.25], [1, 0]])
    three = simplex_weights(3, 3)
    assert three.shape == (10, 3) and np.allclose(three.sum(1), 1) and (three >= 0).all()
    with pytest.raises(ValueError):
        simplex_weights(2, 0)


def test_capql_config_rejects_bad_sizes() -> None:
    from deepprl.envs.morl import CapqlConfig

    for bad in ({"steps": 0}, {"batch_size": 600}, {"net_arch": ()}, {"learning_starts": -1}):
        with pytest.raises(ValueError, match="CapqlConfig"):
            CapqlConfig(**bad)


def test_morl_baselines_indicators_agree_with_ours() -> None:
    pytest.importorskip("morl_baselines")
    from deepprl.envs.morl import compare_indicators

    rng = np.random.default_rng(0)
    for n, k in [(1, 2), (7, 2), (40, 2), (30, 3)]:
        points = rng.uniform(0, 1, (n, k))
        points = np.vstack([points, points[:1]])  # a duplicate of a point
        result = compare_indicators(points, np.full(k, 0.2))
        assert result["hypervolume"] == pytest.approx(hypervolume(points, np.full(k, 0.2)))
    # hand values: two boxes above (0, 0) of areas 0.4 and 0.3 overlapping in 0.15
    result = compare_indicators([[0.8, 0.5], [0.3, 1.0], [0.2, 0.2]], [0.0, 0.0])
    assert result["front"] == [[0.3, 1.0], [0.8, 0.5]]
    assert result["hypervolume"] == pytest.approx(0.4 + 0.3 - 0.15)


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "kwargs", "n_items"), ENVS)
def test_capql_trains_on_our_environments(env_id, kwargs, n_items) -> None:
    pytest.importorskip("morl_baselines")
    from deepprl.envs.morl import (
        CapqlConfig,
        capql_points,
        compare_indicators,
        morl_env,
        train_capql,
    )

    env = morl_env(env_id, **kwargs)
    agent = train_capql(env, CapqlConfig(steps=120, learning_starts=40, batch_size=16))
    assert agent.global_step == 120
    points, utilities = capql_points(agent, env, simplex_weights(2, 2), seeds=[0, 1])
    assert points.shape == (3, 2) and np.isfinite(points).all() and utilities.shape == (3,)
    assert env.update_running_mean  # restored after the evaluation
    result = compare_indicators(points, np.zeros(2))
    assert result["hypervolume"] > 0


def test_import_deepprl_loads_no_morl_library() -> None:
    """The extra is imported lazily; importing mo_gymnasium (hence gymnasium) after deepprl
    still registers our ids."""
    pytest.importorskip("mo_gymnasium")
    code = ("import sys, deepprl, deepprl.envs.morl\n"
            "print(sorted(m for m in ('mo_gymnasium', 'morl_baselines', 'wandb', 'pymoo') "
            "if m in sys.modules))\n"
            "import mo_gymnasium\n"
            "print(mo_gymnasium.make('deepprl/Simulator-v0').unwrapped.reward_space.shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "(2,)"]
