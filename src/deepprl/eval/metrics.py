"""Top-K metrics of paper Table 4: the mean ground-truth value of the recommended items."""

from __future__ import annotations

import numpy as np
import torch

from deepprl.ranking.utility import top_k, utility


def top_k_reward(y_hat: torch.Tensor, reward: torch.Tensor, valid: torch.Tensor,
                 alpha: torch.Tensor, k: int) -> torch.Tensor:
    """Mean true reward [B] of the top-k candidates ranked by sum_k alpha_k y_hat_k."""
    return top_k_reward_of(utility(y_hat, alpha), reward, valid, k)


def top_k_reward_of(scores: torch.Tensor, reward: torch.Tensor, valid: torch.Tensor, k: int
                    ) -> torch.Tensor:
    """Mean true reward [B] of the top-k valid candidates ranked by scores [B, C]."""
    idx = top_k(scores, valid, k)
    chosen_valid = valid.gather(1, idx).float()
    chosen = reward.gather(1, idx) * chosen_valid
    return chosen.sum(1) / chosen_valid.sum(1).clamp(min=1.0)


def mean_of_top(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values [E, C, ...] and idx [E, k] -> mean over the k chosen items [E, ...]."""
    rows = np.arange(values.shape[0])[:, None]
    return np.nanmean(values[rows, idx], axis=1)


def pair_correlations(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """values [N, K] -> Pearson correlation of every pair of columns, "a-b" -> r; NaN for
    fewer than three rows or a constant column (Table 13, offline and online)."""
    out = {}
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            x, y = values[:, i], values[:, j]
            ok = len(x) > 2 and x.std() > 0 and y.std() > 0
            out[f"{a}-{names[j]}"] = float(np.corrcoef(x, y)[0, 1]) if ok else float("nan")
    return out
