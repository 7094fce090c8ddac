"""The baselines' history input: the mean of the last L steps, no sequence model.

Paper §5.2: every baseline gets "the last 10 purchased products & timestamp as the
contextual information"; the multi-task baselines have no sequence model of their own
(MoSE excepts: its experts are sequential), so their state is the masked mean of the step
inputs (item embedding + step context), projected to `hidden`.
"""

from __future__ import annotations

import torch
from torch import nn


class MeanPoolHistory(nn.Module):
    """x [B, L, D], gaps [B, L], mask [B, L] -> [B, hidden]; an empty history gives the
    projection of zeros."""

    def __init__(self, input_dim: int, hidden: int, *, use_attention: bool = True,
                 use_time_gate: bool = True, similarity: str = "neg_sq_dist") -> None:
        super().__init__()
        del use_attention, use_time_gate, similarity  # a pooled history has none of these
        self.proj = nn.Linear(input_dim + 1, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight = mask.float().unsqueeze(-1)  # [B, L, 1]
        steps = torch.cat([x, gaps.unsqueeze(-1)], dim=-1) * weight
        mean = steps.sum(1) / weight.sum(1).clamp(min=1.0)  # [B, D + 1]
        return torch.tanh(self.proj(mean))
