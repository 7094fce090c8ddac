"""A gymnasium environment of one user interacting with a recommender (vector reward).

Episode: reset draws a user (or takes options={"user": u}) and their initial history; each
step the agent scores every item, the environment recommends the top-k unconsumed items,
the user responds (deepprl.envs.core), and the vector reward is the mean true objective
vector of the k items. The episode is truncated after `horizon` steps.

Spaces (U users, I items, K objectives, L = history_length, d user features):
- observation, a Dict of what a recommender may see (never the hidden preference):
  user Discrete(U, start=1); user_features Box[d]; history_items Box[L] of item indices
  (int64, 0 = padding, oldest first); history_time_hours Box[L] (float64, hours since the
  world's epoch, 0 for padding); time_hours Box[1] (now); consumed MultiBinary[I]
  (consumed[j] = item j + 1 was consumed, so it will not be recommended);
- action: Box(-1, 1, [I]) of item scores (float32, column j = item j + 1; only their
  order matters, so scores outside [-1, 1] are accepted too, never clipped); an agent that
  picks k items puts a high score on them (a continuous-control agent outputs the scores);
- reward: float32 [K] with reward_space Box(0, 1, [K]) (MO-Gymnasium convention).
info: recommended [k], chosen (0 = nothing), utility (mean true utility of the list: the
user's own trade-off, not shown in the observation before the step), oracle_reward [K]
(the true objectives of the best list for the user's utility, for regret).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from deepprl.envs.core import Population, ResponseConfig, Truth

HOUR = 3600.0
InitialHistory = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, float]]
"""(rng, user) -> (items [h0], times [h0] seconds, start time of the first step)."""


class RecommenderEnv(gym.Env[dict[str, Any], np.ndarray]):
    """One user at a time; subclasses provide the Truth, features and initial histories."""

    def __init__(self, *, truth: Truth, user_features: np.ndarray,
                 initial_history: InitialHistory, response: ResponseConfig,
                 horizon: int, history_length: int, initial_length: int,
                 objective_names: tuple[str, ...]) -> None:
        if horizon < 1 or history_length < 1:
            raise ValueError("horizon and history_length must be >= 1")
        self.metadata = {"render_modes": []}
        self.truth, self.response, self.horizon = truth, response, horizon
        self.user_features = np.asarray(user_features, dtype=np.float32)  # [U + 1, d]
        self.initial_history = initial_history
        self.history_length, self.initial_length = history_length, initial_length
        self.objective_names = objective_names
        U, I, K = truth.n_users, truth.n_items, truth.n_objectives
        self.observation_space = spaces.Dict({
            "user": spaces.Discrete(U, start=1),
            "user_features": spaces.Box(-np.inf, np.inf, (self.user_features.shape[1],),
                                        np.float32),
            "history_items": spaces.Box(0, I, (history_length,), np.int64),
            "history_time_hours": spaces.Box(0.0, np.inf, (history_length,), np.float64),
            "time_hours": spaces.Box(0.0, np.inf, (1,), np.float64),
            "consumed": spaces.MultiBinary(I),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (I,), np.float32)
        self.reward_space = spaces.Box(0.0, 1.0, (K,), np.float32)
        self.reward_dim = K
        self.population: Population | None = None
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        user = int(options.get("user", self.np_random.integers(1, self.truth.n_users + 1)))
        if not 1 <= user <= self.truth.n_users:
            raise ValueError(f"user must be in 1..{self.truth.n_users}, got {user}")
        items, times, start = self.initial_history(self.np_random, user)
        self.population = Population(
            self.truth, self.response, users=np.array([user]), history=items[None],
            hist_times=times[None], start=np.array([start]), capacity=self.horizon,
            seed=int(self.np_random.integers(2**63)))
        self.steps = 0
        return self._observation(), {"user": user}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], np.ndarray, bool, bool,
                                                dict[str, Any]]:
        pop = self._pop()
        scores = np.asarray(action, dtype=np.float64).reshape(1, -1)
        oracle = self._oracle_reward()
        result = pop.step(scores)
        self.steps += 1
        info = {"recommended": result.recommended[0], "chosen": int(result.chosen[0]),
                "utility": float(result.utility[0]), "oracle_reward": oracle}
        reward = result.reward[0].astype(np.float32)
        return self._observation(), reward, False, self.steps >= self.horizon, info

    def true_values(self) -> tuple[np.ndarray, np.ndarray]:
        """The hidden truth now, for evaluation only: (objectives [I, K], utility [I])."""
        pop = self._pop()
        objectives, utility = pop.true_values(np.arange(1, self.truth.n_items + 1)[None])
        return objectives[0], utility[0]

    def _oracle_reward(self) -> np.ndarray:
        """Mean true objectives of the k unconsumed items of highest true utility."""
        pop = self._pop()
        objectives, utility = self.true_values()
        top = pop.rank(utility[None])[0] - 1
        return objectives[top].mean(0).astype(np.float32)

    def _pop(self) -> Population:
        if self.population is None:
            raise RuntimeError("call reset() before step()")
        return self.population

    def _observation(self) -> dict[str, Any]:
        pop = self._pop()
        items, times, _ = pop.recent(self.history_length)
        user = int(pop.users[0])
        return {
            "user": np.int64(user),
            "user_features": self.user_features[user].copy(),
            "history_items": items[0].astype(np.int64),
            "history_time_hours": np.where(items[0] > 0, times[0] / HOUR, 0.0),
            "time_hours": np.array([pop.now[0] / HOUR]),
            "consumed": pop.consumed[0, 1:].astype(np.int8),
        }


def random_history(n_items: int, length: int, days: float
                   ) -> InitialHistory:
    """Initial histories of `length` distinct random items at random times over `days`
    days; the first step comes one hour after the last of them."""

    def draw(rng: np.random.Generator, user: int) -> tuple[np.ndarray, np.ndarray, float]:
        items = rng.permutation(n_items)[:length] + 1
        times = np.sort(rng.uniform(0.0, days * 86400.0, size=length))
        return items.astype(np.int64), times, float(times[-1] + HOUR)

    return draw
