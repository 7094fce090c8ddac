"""`deepprl/MovieLensSim-v0`: the calibrated MovieLens-100K world, interactive.

Ground truth for every (user, item, time) (deepprl.data.movielens_sim):
- consistency: Jaccard similarity of the item's genres with the user's latest item, so a
  user's choices change what is consistent next;
- recency: exp(-age / 365 days) at the time of the step;
- relevance (option `objectives`, e.g. objectives=("relevance", "consistency", "recency")):
  the calibrated rating / 5, as an objective of the reward vector;
- utility (what drives the user's choice): the calibrated rating / 5.
The oracle ranks by the true values (utility, or an alpha sweep over the objectives).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepprl.data.interactions import Interactions
from deepprl.data.movielens import (
    OBJECTIVES,
    PAPER_OBJECTIVES,
    RECENCY_TAU_DAYS,
    TimedGenreValuer,
    jaccard,
    load_movielens_100k,
)
from deepprl.data.movielens_sim import fit_rating_model
from deepprl.data.objectives import SelectedValuer, parse_objectives
from deepprl.envs.core import ResponseConfig
from deepprl.envs.gym_env import HOUR, RecommenderEnv


class MovieLensTruth:
    """Truth of the calibrated world: consistency depends on the user's latest item,
    recency on the clock, relevance and utility (rating / 5) on the pair. `objectives`:
    which of OBJECTIVES the reward vector holds, in that order."""

    def __init__(self, ratings: np.ndarray, genres: np.ndarray, release_ts: np.ndarray,
                 objectives: Sequence[str] = PAPER_OBJECTIVES) -> None:
        self.ratings, self.genres, self.release_ts = ratings, genres, release_ts
        self.n_users, self.n_items = ratings.shape[0] - 1, ratings.shape[1] - 1
        self.objective_names = parse_objectives(objectives, OBJECTIVES, dataset="movielens-sim")
        self.n_objectives = len(self.objective_names)

    def values(self, users: np.ndarray, items: np.ndarray, times: np.ndarray,
               prev_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        consistency = jaccard(self.genres[items], self.genres[prev_items][:, None, :])
        consistency = np.where(prev_items[:, None] > 0, consistency, 0.0)  # [N, C]
        age = np.maximum(np.asarray(times)[:, None] - self.release_ts[items], 0.0)
        recency = np.exp(-age / 86400.0 / RECENCY_TAU_DAYS)
        utility = self.ratings[users[:, None], items] / 5.0
        value = {"consistency": consistency, "recency": recency, "relevance": utility}
        return np.stack([value[n] for n in self.objective_names], axis=-1), utility


def movielens_truth(data: Interactions | None = None,
                    objectives: Sequence[str] = PAPER_OBJECTIVES) -> MovieLensTruth:
    """The calibrated world's truth with these objectives; `data` is movielens-100k
    (loaded when not given)."""
    data = data if data is not None else load_movielens_100k()
    genre_valuer = data.valuer.base if isinstance(data.valuer, SelectedValuer) else data.valuer
    if not isinstance(genre_valuer, TimedGenreValuer):
        raise TypeError("movielens-100k lost its TimedGenreValuer")
    return MovieLensTruth(fit_rating_model(), genre_valuer.genres, genre_valuer.release_ts,
                          objectives)


class MovieLensSimEnv(RecommenderEnv):
    """943 users x 1682 movies of MovieLens-100K, fully observed through the calibrated
    world. A user starts from their last `initial_length` logged ratings (every movie they
    rated counts as consumed) one hour after their last logged rating."""

    def __init__(self, *, initial_length: int = 10, horizon: int = 50,
                 history_length: int = 10, k: int = 10, temperature: float = 0.1,
                 outside: float = 0.8, mean_gap_hours: float = 24.0,
                 objectives: Sequence[str] = PAPER_OBJECTIVES) -> None:
        data = load_movielens_100k()
        self.data = data
        truth = movielens_truth(data, objectives)

        def history(rng: np.random.Generator, user: int
                    ) -> tuple[np.ndarray, np.ndarray, float]:
            span = data.user_events(user)[-initial_length:]
            return data.item[span], data.time[span], float(data.time[span[-1]] + HOUR)

        super().__init__(
            truth=truth,
            user_features=data.user_features, initial_history=history,
            response=ResponseConfig(k=k, temperature=temperature, outside=outside,
                                    mean_gap_hours=mean_gap_hours),
            horizon=horizon, history_length=history_length, initial_length=initial_length,
            objective_names=truth.objective_names)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        _, info = super().reset(seed=seed, options=options)
        pop = self._pop()
        seen = self.data.item[self.data.user_events(int(pop.users[0]))]
        pop.consumed[0, seen] = True
        return self._observation(), info
