"""The gymnasium environments: API conformance, determinism, response model, agents."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import deepprl  # registers the environments
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.registry import load_dataset
from deepprl.data.sequences import history_index, make_batch
from deepprl.data.simulator import SimulatorConfig, make_world
from deepprl.envs.agents import RecommenderAgent, lane_batch
from deepprl.envs.core import Population, ResponseConfig
from deepprl.envs.simulator_env import SimulatorEnv, SimulatorTruth

SMALL = {"n_users": 12, "n_items": 30, "horizon": 6}


def _episode(env: gym.Env, seed: int, actions: list[np.ndarray]) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    out = [tuple(np.asarray(v).tobytes() for v in obs.values())]
    for action in actions:
        obs, reward, term, trunc, info = env.step(action)
        out.append((reward.tobytes(), info["chosen"], term, trunc,
                    *(np.asarray(v).tobytes() for v in obs.values())))
    return out


def test_simulator_env_passes_check_env() -> None:
    env = gym.make("deepprl/Simulator-v0", **SMALL)
    with pytest.warns(UserWarning):  # unbounded feature boxes, vector reward (MO convention)
        check_env(env.unwrapped, skip_render_check=True)


def test_reward_space_and_random_episode() -> None:
    env = gym.make("deepprl/Simulator-v0", **SMALL)
    assert env.unwrapped.reward_space.shape == (2,)
    obs, info = env.reset(seed=0)
    assert obs["consumed"].sum() == 10 and "preference" not in obs
    env.action_space.seed(0)
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated and env.unwrapped.reward_space.contains(reward)
        assert len(set(info["recommended"].tolist())) == 10
        steps += 1
    assert steps == SMALL["horizon"]


def test_environment_is_deterministic_under_seed() -> None:
    rng = np.random.default_rng(1)
    actions = [rng.uniform(-1, 1, SMALL["n_items"]).astype(np.float32) for _ in range(5)]
    first = _episode(gym.make("deepprl/Simulator-v0", **SMALL), 7, actions)
    again = _episode(gym.make("deepprl/Simulator-v0", **SMALL), 7, actions)
    other = _episode(gym.make("deepprl/Simulator-v0", **SMALL), 8, actions)
    assert first == again
    assert first != other


def test_consumed_items_are_never_recommended_again() -> None:
    env = SimulatorEnv(**SMALL)
    obs, _ = env.reset(seed=3)
    scores = np.linspace(1, -1, SMALL["n_items"]).astype(np.float32)  # always the same order
    seen = set(np.flatnonzero(obs["consumed"]) + 1)
    for _ in range(SMALL["horizon"]):
        obs, _, _, _, info = env.step(scores)
        assert not seen & set(info["recommended"].tolist())
        if info["chosen"]:
            assert info["chosen"] in info["recommended"]
            seen.add(info["chosen"])
            assert obs["history_items"][-1] == info["chosen"]
    assert seen == set(np.flatnonzero(obs["consumed"]) + 1)


def _population(response: ResponseConfig) -> Population:
    truth = SimulatorTruth(make_world(SimulatorConfig(n_users=5, n_items=30,
                                                      events_per_user=30)))
    users = np.arange(1, 6)
    return Population(truth, response, users=users, history=np.zeros((5, 1), dtype=np.int64),
                      hist_times=np.zeros((5, 1)), start=np.full(5, 3600.0), capacity=3,
                      seed=0)


def test_response_follows_the_true_utility() -> None:
    greedy = _population(ResponseConfig(temperature=1e-4, outside=-1.0))
    scores = np.zeros((5, 30))
    result = greedy.step(scores)
    _, utility = greedy.truth.values(greedy.users, result.recommended, np.full(5, 3600.0),
                                     np.zeros(5, dtype=np.int64))
    best = result.recommended[np.arange(5), utility.argmax(1)]
    np.testing.assert_array_equal(result.chosen, best)
    np.testing.assert_allclose(result.utility, utility.mean(1))
    shy = _population(ResponseConfig(temperature=1e-4, outside=10.0))
    assert (shy.step(scores).chosen == 0).all()


def test_lane_inputs_match_the_logged_encoding() -> None:
    """A lane holding a user's logged past gets the inputs make_batch gives the next event."""
    data = load_dataset({"name": "simulator", "n_users": 4, "n_items": 20,
                         "events_per_user": 15})
    truth = SimulatorTruth(make_world(SimulatorConfig(n_users=4, n_items=20,
                                                      events_per_user=15)))
    events = np.array([data.user_events(u)[12] for u in range(1, 5)])  # the 13th events
    past = np.stack([data.item[data.user_events(u)[:12]] for u in range(1, 5)])
    times = np.stack([data.time[data.user_events(u)[:12]] for u in range(1, 5)])
    pop = Population(truth, ResponseConfig(k=2), users=np.arange(1, 5), history=past,
                     hist_times=times, start=data.time[events], capacity=1, seed=0)
    ours = lane_batch(pop, data, 10)
    logged = make_batch(data, history_index(data, 10)[events], events)
    for field in dataclasses.fields(logged):
        torch.testing.assert_close(getattr(ours, field.name), getattr(logged, field.name),
                                   msg=field.name)


def test_trained_deepprl_acts_in_the_environment(tmp_path) -> None:
    from deepprl.artifacts import load_run
    from deepprl.train.run import train_run

    config = RunConfig(dataset={"name": "simulator", "n_users": 12, "n_items": 30,
                                "events_per_user": 12},
                       train=TrainConfig(epochs=1), policy=PolicyConfig(steps=10),
                       eval=EvalConfig(max_events=50))
    train_run(config, tmp_path / "run")
    _, ranker = load_run(tmp_path / "run")
    env = SimulatorEnv(**SMALL)
    agent = RecommenderAgent(ranker)
    env.reset(seed=0)
    scores = agent(env)
    assert scores.shape == (SMALL["n_items"],) and np.isfinite(scores).all()
    rewards = []
    for _ in range(SMALL["horizon"]):
        _, reward, _, truncated, info = env.step(agent(env))
        rewards.append(reward)
    assert truncated and np.isfinite(rewards).all()
    # the agent's own top-10 is what the environment recommends (nothing consumed in it)
    env.reset(seed=1)
    top = np.argsort(-agent(env), kind="stable")
    top = top[~env.population.consumed[0, top + 1]][:10] + 1
    _, _, _, _, info = env.step(agent(env))
    np.testing.assert_array_equal(info["recommended"], top)


def test_movielens_sim_env_and_dataset() -> None:
    from deepprl.data.registry import load_dataset

    env = gym.make("deepprl/MovieLensSim-v0", horizon=3)
    with pytest.warns(UserWarning):
        check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.reward_space.shape == (2,)
    obs, info = env.unwrapped.reset(seed=0, options={"user": 1})
    data = env.unwrapped.data
    rated = data.item[data.user_events(1)]
    assert obs["consumed"][rated - 1].all() and obs["consumed"].sum() == len(rated)
    np.testing.assert_array_equal(obs["history_items"], rated[-10:])
    _, reward, _, _, info = env.unwrapped.step(np.zeros(data.n_items, dtype=np.float32))
    assert not set(info["recommended"].tolist()) & set(rated.tolist())
    assert env.unwrapped.reward_space.contains(reward)
    sim = load_dataset({"name": "movielens-sim"})
    objectives, value = sim.candidate_values(np.arange(3), np.tile(np.arange(1, 51), (3, 1)))
    assert np.isfinite(value).all() and np.isfinite(objectives).all()  # fully observed
    _, logged = sim.candidate_values(np.arange(3), sim.item[:3, None])
    np.testing.assert_allclose(logged[:, 0], sim.reward[:3])
    # candidates: a seeded sample of 100 movies per user, the same at each of its events
    from deepprl.data.sequences import candidate_items

    events = np.r_[sim.user_events(1)[:2], sim.user_events(2)[:1]]
    items = candidate_items(sim, events, np.ones(len(sim.user), dtype=bool))
    assert items.shape == (3, 100) and (items > 0).all()
    assert len(np.unique(items[0])) == 100 and not np.array_equal(items[0], items[2])
    np.testing.assert_array_equal(items[0], items[1])
    np.testing.assert_array_equal(items, candidate_items(sim, events, np.ones(len(sim.user),
                                                                              dtype=bool)))


def test_rating_model_beats_the_mean_on_held_out_ratings() -> None:
    from deepprl.data.movielens_sim import calibrate_rating_model

    errors = calibrate_rating_model(iters=3)
    assert errors["mf_rmse"] < errors["global_mean_rmse"]
    assert errors["mf_mae"] < errors["global_mean_mae"]


def test_registration_survives_reimport() -> None:
    import importlib

    importlib.reload(deepprl)
    assert {"deepprl/Simulator-v0", "deepprl/MovieLensSim-v0"} <= set(gym.registry)
    env = gym.make("deepprl/Simulator-v0")
    assert env.action_space.shape == (100,) and env.unwrapped.response.k == 10


def test_movielens_sim_env_reward_vector_follows_the_objectives_option() -> None:
    paper = gym.make("deepprl/MovieLensSim-v0", horizon=2).unwrapped
    three = gym.make("deepprl/MovieLensSim-v0", horizon=2,
                     objectives=("recency", "relevance", "consistency")).unwrapped
    assert three.reward_space.shape == (3,)
    action = np.zeros(three.data.n_items, dtype=np.float32)
    for env in (paper, three):
        env.reset(seed=4, options={"user": 7})
    _, two, *_, info2 = paper.step(action)
    _, vec, *_, info3 = three.step(action)
    np.testing.assert_array_equal(info2["recommended"], info3["recommended"])
    np.testing.assert_allclose(vec[[2, 0]], two, rtol=1e-6)  # consistency, recency
    # relevance: the mean calibrated rating / 5 of the list, i.e. the list's true utility
    assert three.truth.objective_names[1] == "relevance"
    np.testing.assert_allclose(vec[1], info3["utility"], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown objective 'rating'"):
        gym.make("deepprl/MovieLensSim-v0", objectives=("rating", "recency"))
