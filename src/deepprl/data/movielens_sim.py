"""MovieLens-100K made fully observed: a calibrated rating for every (user, movie).

The world behind `deepprl/MovieLensSim-v0` (deepprl.envs.movielens_sim) and the offline
dataset `movielens-sim`:
- rating: a seeded biased matrix factorisation fitted on all 100,000 ratings
  (r_ui = mu + b_u + b_i + p_u . q_i by alternating least squares, clipped to [1, 5]); its
  error on held-out ratings (calibrate_rating_model) is the price of filling the matrix;
- consistency and recency: movielens-100k's objectives, computable for any item at any
  event (genres, release dates);
- relevance (dataset option `objectives`): the calibrated rating / 5, for any item.
The reward (the user's utility) is the calibrated rating / 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np
from scipy import sparse

from deepprl.data.interactions import Interactions
from deepprl.data.movielens import (
    OBJECTIVES,
    PAPER_OBJECTIVES,
    TimedGenreValuer,
    load_movielens_100k,
)
from deepprl.data.objectives import select_objectives

RANK, ITERS, L2 = 16, 10, 0.1
"""MF rank, ALS sweeps, weighted-lambda ridge (chosen among 0.05, 0.1, 0.2 by the held-out
error below: the calibration figures are therefore slightly optimistic)."""


def _fit_mf(user: np.ndarray, item: np.ndarray, rating: np.ndarray, shape: tuple[int, int],
            *, rank: int, iters: int, l2: float, seed: int) -> np.ndarray:
    """Biased MF by alternating least squares with weighted-lambda regularisation (each
    row's ridge penalty grows with its number of ratings) -> [U + 1, I + 1] in [1, 5]."""
    rng = np.random.default_rng(seed)
    n_u, n_i = shape
    mu = float(rating.mean())
    p = 0.1 * rng.standard_normal((n_u, rank))
    q = 0.1 * rng.standard_normal((n_i, rank))
    bu, bi = np.zeros(n_u), np.zeros(n_i)
    for _ in range(iters):
        # users: unknowns [p_u, b_u] against item features [q_i, 1]
        x = _ridge(user, np.c_[q, np.ones(n_i)][item], rating - mu - bi[item], n_u, l2)
        p, bu = x[:, :rank], x[:, rank]
        x = _ridge(item, np.c_[p, np.ones(n_u)][user], rating - mu - bu[user], n_i, l2)
        q, bi = x[:, :rank], x[:, rank]
    full = mu + bu[:, None] + bi[None, :] + p @ q.T
    return np.clip(full, 1.0, 5.0).astype(np.float32)


def _ridge(index: np.ndarray, features: np.ndarray, target: np.ndarray, n: int, l2: float
           ) -> np.ndarray:
    """Per-row ridge solutions [n, d]: row r solves (F_r'F_r + l2 n_r I) x = F_r' y_r."""
    d = features.shape[1]
    rows = sparse.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))),
                             shape=(n, len(index)))  # [n, N] one-hot of each rating's row
    gram = np.asarray(rows @ (features[:, :, None] * features[:, None, :]).reshape(-1, d * d))
    gram = gram.reshape(n, d, d)
    rhs = np.asarray(rows @ (features * target[:, None]))
    count = np.bincount(index, minlength=n)
    gram += (l2 * np.maximum(count, 1))[:, None, None] * np.eye(d)[None]
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def _ratings(data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    rating = data.reward.astype(np.float64) * 5.0  # movielens-100k's reward is rating / 5
    return data.user, data.item, rating, (data.n_users + 1, data.n_items + 1)


@lru_cache(maxsize=1)
def fit_rating_model(*, rank: int = RANK, iters: int = ITERS, l2: float = L2, seed: int = 0
                     ) -> np.ndarray:
    """The world's true ratings [U + 1, I + 1]: MF fitted on all 100,000 ratings."""
    user, item, rating, shape = _ratings(load_movielens_100k())
    return _fit_mf(user, item, rating, shape, rank=rank, iters=iters, l2=l2, seed=seed)


def calibrate_rating_model(*, rank: int = RANK, iters: int = ITERS, l2: float = L2,
                           seed: int = 0, holdout: float = 0.2) -> dict[str, float]:
    """Held-out error of the rating model: fit on a random 1 - `holdout` share of the
    ratings, MAE/RMSE on the rest, against two baselines (the training mean; user + item
    biases only). `deepprl calibrate`-style numbers for docs/environments.md."""
    user, item, rating, shape = _ratings(load_movielens_100k())
    test = np.random.default_rng(seed).random(len(user)) < holdout
    train = ~test
    mf = _fit_mf(user[train], item[train], rating[train], shape, rank=rank, iters=iters,
                 l2=l2, seed=seed)
    biases = _fit_mf(user[train], item[train], rating[train], shape, rank=0, iters=iters,
                     l2=l2, seed=seed)
    truth = rating[test]
    out: dict[str, float] = {"held_out_ratings": int(test.sum())}
    for name, pred in (("mf", mf[user[test], item[test]]),
                       ("biases_only", biases[user[test], item[test]]),
                       ("global_mean", np.full(int(test.sum()), rating[train].mean()))):
        out[f"{name}_mae"] = float(np.abs(pred - truth).mean())
        out[f"{name}_rmse"] = float(np.sqrt(((pred - truth) ** 2).mean()))
    return out


class MovieLensSimValuer:
    """Offline ground truth of `movielens-sim`: the objectives at the event (as for
    movielens-100k) and the calibrated rating / 5 of ANY item: fully observed.

    Every event's candidates are a seeded sample of `candidate_sample` movies per user
    (deepprl.data.sequences.candidate_items), the same for every method: ranking all 1,682
    movies at every event of every method and weight did not fit our machine."""

    fully_observed = True
    candidate_sample = 100

    def __init__(self, genre_valuer: TimedGenreValuer, ratings: np.ndarray) -> None:
        self.genre_valuer, self.ratings = genre_valuer, ratings

    def values(self, data: Interactions, events: np.ndarray, items: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        objectives, _ = self.genre_valuer.values(data, events, items)  # [E, C, OBJECTIVES]
        reward = (self.ratings[data.user[events][:, None], items] / 5.0).astype(np.float32)
        reward[items == 0] = np.nan
        objectives[..., OBJECTIVES.index("relevance")] = reward  # every item is rated here
        return objectives, reward


def load_movielens_sim(objectives: str | Sequence[str] = PAPER_OBJECTIVES) -> Interactions:
    """MovieLens-100K's events, rewards (and relevance) replaced by the calibrated ratings
    / 5, with a fully observed valuer (every item of every user at every event)."""
    data = load_movielens_100k(objectives=OBJECTIVES)
    ratings = fit_rating_model()
    genre_valuer = data.valuer
    if not isinstance(genre_valuer, TimedGenreValuer):
        raise TypeError("movielens-100k lost its TimedGenreValuer")
    reward = (ratings[data.user, data.item] / 5.0).astype(np.float32)
    logged = data.objectives.copy()
    logged[:, OBJECTIVES.index("relevance")] = reward
    world = replace(data, name="movielens-sim", reward=reward, objectives=logged,
                    valuer=MovieLensSimValuer(genre_valuer, ratings))
    return select_objectives(world, objectives)


