"""Drive deepprl/Simulator-v0 with a random policy and with a trained DeepPRL model.

Run from the repository root:  python examples/environment.py   (about a minute on CPU)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import deepprl  # noqa: F401  (registers deepprl/Simulator-v0 and deepprl/MovieLensSim-v0)
from deepprl.artifacts import load_run
from deepprl.config import PolicyConfig, RunConfig, TrainConfig
from deepprl.envs.agents import RecommenderAgent
from deepprl.train.run import train_run


def episode(env: gym.Env, act, seed: int) -> tuple[np.ndarray, float]:
    """Mean vector reward and mean true utility of one episode (one user, 50 steps)."""
    env.reset(seed=seed)
    rewards, utilities, done = [], [], False
    while not done:
        _, reward, terminated, truncated, info = env.step(act())
        rewards.append(reward)
        utilities.append(info["utility"])
        done = terminated or truncated
    return np.mean(rewards, axis=0), float(np.mean(utilities))


def main() -> None:
    env = gym.make("deepprl/Simulator-v0")  # 100 users x 100 items, world seed 0
    print("reward space:", env.unwrapped.reward_space)
    env.action_space.seed(0)
    random = [episode(env, env.action_space.sample, s) for s in range(20)]

    # A model trained on the offline log of the same world (seed 0): 80 items per user.
    train_run(RunConfig(dataset={"name": "simulator", "events_per_user": 80, "seed": 0},
                        train=TrainConfig(epochs=4), policy=PolicyConfig(steps=500)),
              "runs/example-env")
    _, recommender = load_run("runs/example-env")
    agent = RecommenderAgent(recommender)
    learned = [episode(env, lambda: agent(env.unwrapped), s) for s in range(20)]

    for name, results in (("random", random), ("deepprl", learned)):
        objectives = np.mean([r for r, _ in results], axis=0)
        utility = np.mean([u for _, u in results])
        print(f"{name:8s} objectives {np.round(objectives, 3)}  true utility {utility:.3f}")


if __name__ == "__main__":
    main()
