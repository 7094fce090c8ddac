"""The one utility sum_k alpha_k y_hat_k and the one top-K with its tie rule.

Everything that ranks (training, evaluation, the recommender, serving, the interactive
worlds, the A/B simulation) ranks through these two functions.
"""

from __future__ import annotations

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
