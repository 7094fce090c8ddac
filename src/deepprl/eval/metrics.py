"""Top-K metrics of paper Table 4: the mean ground-truth value of the recommended items."""

from __future__ import annotations

import numpy as np
import torch


def utility(y_hat: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """sum_k alpha_k y_hat_k: y_hat [B, C, K], alpha [B, K] -> scores [B, C]."""
    return torch.einsum("bck,bk->bc", y_hat, alpha)


def top_k(scores: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, k] of the k best valid candidates (ties: lower index first)."""
    masked = scores.masked_fill(~valid, float("-inf"))
    if masked.shape[0] == 1 and 8 * k < masked.shape[1]:  # one request, many candidates
        # every top-k item scores >= the k-th best: stable-sort only those (in index order)
        row = masked[0]
        kth = row.topk(k).values[-1]
        survivors = torch.nonzero(row >= kth).squeeze(1)
        order = torch.sort(row[survivors], descending=True, stable=True).indices[:k]
        return survivors[order][None]
    # a stable sort makes ties deterministic, whatever the platform's topk does
    return torch.sort(masked, dim=-1, descending=True, stable=True).indices[:, :k]


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
