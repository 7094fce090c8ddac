"""MORL libraries on our environments: the optional extra `pip install 'deepprl[morl]'`.

MO-Gymnasium's wrappers (LinearReward, MORecordEpisodeStatistics, MONormalizeReward, ...)
take `deepprl/Simulator-v0` and `deepprl/MovieLensSim-v0` as they are: step() returns a
float32 reward [K] and `env.unwrapped.reward_space` is Box(0, 1, [K]) (with `reward_dim`
K), the MO-Gymnasium convention. morl-baselines' agents need one thing more, a flat Box
observation: `morl_env` flattens the Dict and normalises it (its times are hours since the
world's epoch, in the thousands). The action stays the environment's own Box(-1, 1, [I])
of item scores, which continuous-action agents (CAPQL, here) output directly.

Nothing here imports mo_gymnasium or morl_baselines at module import: each function
imports what it uses, so `import deepprl` never needs the extra.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import FlattenObservation, NormalizeObservation

from deepprl.eval.pareto import hypervolume, pareto_mask

Act = Callable[[Any], np.ndarray]
"""observation -> action (item scores [I])."""


def morl_env(env_id: str, *, normalize: bool = True, **kwargs: Any) -> gym.Env:
    """mo_gymnasium.make(env_id, **kwargs) (gymnasium.make without the scalar-reward
    checker) with a flat float observation; running-normalised when `normalize` (freeze
    the statistics with `env.update_running_mean = False` before evaluating)."""
    import mo_gymnasium

    env: gym.Env = FlattenObservation(mo_gymnasium.make(env_id, **kwargs))
    return NormalizeObservation(env) if normalize else env


def mean_reward(env: gym.Env, act: Act, seeds: Sequence[int]) -> tuple[np.ndarray, float]:
    """(mean per-step vector reward [K], mean true utility) of `act` over one episode per
    seed: an episode's undiscounted return / its length (and its info["utility"], the
    users' own trade-off, for evaluation only), averaged over episodes. reset(seed=s)
    draws the same user and initial history for every policy given the same seeds."""
    if not seeds:
        raise ValueError("mean_reward needs at least one seed")
    rewards, utilities = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed))
        episode, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            episode.append(np.asarray(reward, dtype=np.float64))
            utilities.append(float(info["utility"]))
            done = terminated or truncated
        rewards.append(np.mean(episode, axis=0))
    return np.mean(rewards, axis=0), float(np.mean(utilities))


def simplex_weights(n_objectives: int, steps: int) -> np.ndarray:
    """Weights [W, K] on the simplex grid of step 1/steps (K = 2: (0, 1), (0.1, 0.9), ...)."""
    if n_objectives < 1 or steps < 1:
        raise ValueError("simplex_weights needs n_objectives >= 1 and steps >= 1")
    grid = [w for w in np.ndindex(*(steps + 1,) * (n_objectives - 1)) if sum(w) <= steps]
    return np.array([[*w, steps - sum(w)] for w in grid], dtype=np.float64) / steps


@dataclass(frozen=True)
class CapqlConfig:
    """morl-baselines' CAPQL (SAC with weight-conditioned actor and critics), sized for
    a bounded run on two cores."""

    steps: int = 5000
    """environment steps of training (the first `learning_starts` act at random)"""
    learning_starts: int = 500
    """random steps filling the replay buffer before the first update"""
    net_arch: tuple[int, ...] = (64, 64)
    """hidden layers of the actor and of each critic"""
    batch_size: int = 64
    """transitions per update"""
    learning_rate: float = 3e-4
    """Adam step size of the actor and the critics"""
    gamma: float = 0.99
    """discount factor"""
    alpha: float = 0.2
    """entropy coefficient"""
    seed: int = 0
    """seed of torch, random, NumPy, the agent, the action space and the first reset"""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.learning_starts < 0:
            raise ValueError(f"CapqlConfig: steps must be >= 1 and learning_starts >= 0, got "
                             f"{self.steps} and {self.learning_starts}")
        if not 1 <= self.batch_size <= max(self.learning_starts, 1):
            raise ValueError(f"CapqlConfig: batch_size must be in 1..learning_starts (the "
                             f"first update samples that many), got {self.batch_size}")
        if not self.net_arch or min(self.net_arch) < 1:
            raise ValueError(f"CapqlConfig: net_arch needs hidden sizes >= 1, got "
                             f"{self.net_arch}")


def train_capql(env: gym.Env, config: CapqlConfig) -> Any:
    """A CAPQL agent trained on `env` (a morl_env) for config.steps steps; its greedy
    action for weights w is agent.eval(obs, w). wandb is imported by morl-baselines but
    never logged to (log=False, WANDB_MODE=disabled unless already set)."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    from morl_baselines.multi_policy.capql.capql import CAPQL

    torch.manual_seed(config.seed)
    random.seed(config.seed)  # the replay buffer samples with `random`
    np.random.seed(config.seed)
    agent = CAPQL(env, learning_rate=config.learning_rate, gamma=config.gamma,
                  buffer_size=config.steps, net_arch=list(config.net_arch),
                  batch_size=config.batch_size, alpha=config.alpha,
                  learning_starts=config.learning_starts, log=False, seed=config.seed,
                  device="cpu")
    env.action_space.seed(config.seed)
    env.reset(seed=config.seed)  # CAPQL's own reset() goes on from this seed
    reference = np.zeros(env.get_wrapper_attr("reward_dim"), dtype=np.float64)
    # log=False: no evaluation during training, so two front weights (pymoo's energy
    # method takes seconds for the default 100, computed even when unused)
    agent.train(total_timesteps=config.steps, eval_env=env, ref_point=reference,
                num_eval_weights_for_front=2)
    return agent


def capql_points(agent: Any, env: gym.Env, weights: np.ndarray, seeds: Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(points [W, K], utilities [W]): mean_reward of the agent's greedy policy for each
    weight vector, with the observation statistics frozen (restored afterwards)."""
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape[1] != env.get_wrapper_attr("reward_dim"):
        raise ValueError(f"weights must be [W, {env.get_wrapper_attr('reward_dim')}], got "
                         f"shape {weights.shape}")
    update = getattr(env, "update_running_mean", None)
    if update is not None:
        env.update_running_mean = False  # type: ignore[attr-defined]
    try:
        results = [mean_reward(env, _greedy(agent, w), seeds) for w in weights]
    finally:
        if update is not None:
            env.update_running_mean = update  # type: ignore[attr-defined]
    return np.stack([r for r, _ in results]), np.array([u for _, u in results])


def _greedy(agent: Any, weight: np.ndarray) -> Act:
    return lambda obs: np.asarray(agent.eval(obs, weight))


def compare_indicators(points: np.ndarray | list[list[float]], ref: np.ndarray | list[float]
                       ) -> dict[str, Any]:
    """Pareto front and hypervolume above `ref` of points [N, K], by deepprl.eval.pareto
    and by morl-baselines' own indicators; raises ValueError if they disagree (fronts
    as sets of points, hypervolumes beyond 1e-9 relative)."""
    from morl_baselines.common.pareto import filter_pareto_dominated
    from morl_baselines.common.performance_indicators import hypervolume as their_volume

    array, reference = np.asarray(points, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    ours = np.unique(array[pareto_mask(array)], axis=0)
    theirs = np.unique(np.asarray(filter_pareto_dominated(array)).reshape(-1, array.shape[1]),
                       axis=0)
    volume = hypervolume(array, reference)
    # pymoo (under morl-baselines) counts only points that dominate the reference
    other = float(their_volume(reference, list(array))) if len(array) else 0.0
    if not np.array_equal(ours, theirs) or not np.isclose(volume, other, rtol=1e-9, atol=0):
        raise ValueError(f"indicators disagree: front {ours.tolist()} vs {theirs.tolist()}, "
                         f"hypervolume {volume} vs {other}")
    return {"front": ours.tolist(), "hypervolume": volume, "hypervolume_morl_baselines": other}
