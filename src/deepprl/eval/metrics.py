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
