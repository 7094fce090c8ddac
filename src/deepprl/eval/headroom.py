"""What per-event weights can earn over one static alpha, measured without hindsight.

On a logged trajectory the reward of *every* alpha is computable from the event's logged
candidates, so the reward of each point of a simplex grid is known per event
(grid_rewards). Learners fit on some users are judged on users they never saw
(holdout_users), against the best static alpha, by a paired comparison of per-user means
(paired_by_user): the unit of independence is the user, not the event.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from deepprl.eval.metrics import top_k_reward


def grid_rewards(y_hat: torch.Tensor, reward: torch.Tensor, valid: torch.Tensor,
                 grid: torch.Tensor, k: int, *, chunk: int = 64) -> torch.Tensor:
    """Mean true reward of the top-k under every alpha of `grid`, per event.

    y_hat [E, C, K], reward [E, C], valid [E, C] bool, grid [G, K] -> [E, G]. Grid points
    are scored `chunk` at a time (memory: E x chunk x C scores)."""
    E, G = y_hat.shape[0], grid.shape[0]
    out = torch.empty(E, G)
    for lo in range(0, G, chunk):
        alphas = grid[lo : lo + chunk]  # [g, K]
        g = alphas.shape[0]
        flat = top_k_reward(
            y_hat.repeat_interleave(g, 0), reward.repeat_interleave(g, 0),
            valid.repeat_interleave(g, 0), alphas.repeat(E, 1), k)  # [E * g]
        out[:, lo : lo + g] = flat.view(E, g)
    return out


def holdout_users(user: np.ndarray, share: float, seed: int) -> np.ndarray:
    """[E] bool: True where the event's user is held out. A seeded random `share` of the
    distinct users (at least one, and never all of them when there are two or more)."""
    if not 0 < share < 1:
        raise ValueError(f"the held-out share of users must lie in (0, 1), got {share}")
    users = np.unique(user)
    n = min(max(1, round(share * len(users))), max(1, len(users) - 1))
    held = np.random.default_rng([seed, 61]).choice(users, size=n, replace=False)
    return np.isin(user, held)


def user_folds(user: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """[E] int: the fold (0 .. F - 1) of each event's user, F = min(folds, distinct users).
    The users are dealt round-robin in a seeded order, so fold sizes differ by at most one
    user and every user is in exactly one fold (cross-fitting: each checked once)."""
    if folds < 1:
        raise ValueError(f"the number of folds of users must be >= 1, got {folds}")
    users, index = np.unique(user, return_inverse=True)
    order = np.random.default_rng([seed, 67]).permutation(len(users))
    fold_of = np.empty(len(users), dtype=np.int64)
    fold_of[order] = np.arange(len(users)) % max(1, min(folds, len(users)))
    return fold_of[index]


def paired_by_user(learned: np.ndarray, static: np.ndarray, user: np.ndarray, *,
                   level: float = 0.95) -> dict[str, float]:
    """Learned vs static reward on the same events [E], compared through per-user means.

    Returns the two means (over users), their difference, its one-sided lower confidence
    bound at `level` (Student t over users: the pessimistic estimate of the gain), the
    two-sided paired t-test p-value, and the number of users. With fewer than two users
    or no variation in the differences the bound and p are NaN."""
    learned, static = np.asarray(learned, np.float64), np.asarray(static, np.float64)
    if not learned.shape == static.shape == np.shape(user):
        raise ValueError("learned, static and user must be arrays of the same length")
    if len(learned) == 0:
        raise ValueError("no events to compare")
    ids, index = np.unique(user, return_inverse=True)
    counts = np.bincount(index).astype(np.float64)
    per_user = [np.bincount(index, weights=v) / counts for v in (learned, static)]
    diff = per_user[0] - per_user[1]
    n = len(ids)
    mean = float(diff.mean())
    if n < 2 or np.allclose(diff, diff[0]):
        lower, p = float("nan"), float("nan")
    else:
        se = float(diff.std(ddof=1)) / math.sqrt(n)
        lower = mean - float(stats.t.ppf(level, n - 1)) * se
        p = float(stats.ttest_rel(per_user[0], per_user[1]).pvalue)
    return {"learned": float(per_user[0].mean()), "static": float(per_user[1].mean()),
            "gain": mean, "gain_lower_bound": lower, "p_value": p, "users": float(n)}
