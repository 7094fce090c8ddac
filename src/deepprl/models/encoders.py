"""User-state encoders over the history: the Self-Attentive Time-LSTM and its variants.

Every encoder maps (inputs x [B, L, D], gaps [B, L], mask [B, L]) -> state h [B, H].
Histories are left-padded: masked steps leave the LSTM state untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deepprl.models.layers import similarity_scores
from deepprl.models.pooling import MeanPoolHistory
from deepprl.models.sequential import CausalTransformer, LSTMExperts


class CausalSelfAttention(nn.Module):
    """x~_k = sum_{i<=k} e_ki W_att x_i, e_k = softmax_i(sim(x_k, x_i)) over existing steps."""

    def __init__(self, dim: int, *, similarity: str = "neg_sq_dist") -> None:
        super().__init__()
        self.value = nn.Linear(dim, dim, bias=False)  # W_attention
        self.similarity = similarity

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        scores = similarity_scores(x, x, self.similarity)  # [B, L, L]
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        allowed = causal & mask[:, None, :]  # key must exist and not lie in the future
        allowed = allowed | torch.eye(L, dtype=torch.bool, device=x.device)  # padded rows
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return weights @ self.value(x)  # [B, L, D]


class TimeLSTMCell(nn.Module):
    """The LSTM cell with a time gate (paper §4.3, after Zhu et al. 2017):

    T_k = sigmoid(x W_xt + sigmoid(dt W_tt) + b_t)
    c_k = f_k * c_{k-1} + i_k * T_k * tanh(x W_xc + h_{k-1} W_hc + b_c);  h_k = o_k * tanh(c_k)
    Without the time gate, T_k = 1: a plain LSTM cell.
    """

    def __init__(self, input_dim: int, hidden: int, *, use_time_gate: bool = True) -> None:
        super().__init__()
        self.hidden = hidden
        self.x_gates = nn.Linear(input_dim, 4 * hidden)  # i, f, o, c (biases b_i..b_c)
        self.h_gates = nn.Linear(hidden, 4 * hidden, bias=False)
        self.use_time_gate = use_time_gate
        if use_time_gate:
            self.x_time = nn.Linear(input_dim, hidden)  # W_xt, b_t
            self.dt_time = nn.Linear(1, hidden, bias=False)  # W_tt

    def forward(self, x: torch.Tensor, dt: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, D], dt [B], h, c [B, H] -> (h, c)."""
        gates = self.x_gates(x) + self.h_gates(h)
        i, f, o, g = gates.chunk(4, dim=-1)
        candidate = torch.sigmoid(i) * torch.tanh(g)
        if self.use_time_gate:
            t_gate = torch.sigmoid(self.x_time(x) + torch.sigmoid(self.dt_time(dt[:, None])))
            candidate = candidate * t_gate
        c = torch.sigmoid(f) * c + candidate
        return torch.sigmoid(o) * torch.tanh(c), c


class SelfAttentiveTimeLSTM(nn.Module):
    """Self-attention calibrates the inputs, then the Time-LSTM runs over the L steps."""

    def __init__(self, input_dim: int, hidden: int, *, use_attention: bool = True,
                 use_time_gate: bool = True, similarity: str = "neg_sq_dist") -> None:
        super().__init__()
        self.attention = CausalSelfAttention(input_dim, similarity=similarity) \
            if use_attention else None
        self.cell = TimeLSTMCell(input_dim, hidden, use_time_gate=use_time_gate)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.states(x, gaps, mask)[:, -1]  # [B, H]: the state after the last step

    def states(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], gaps [B, L], mask [B, L] -> the state after every step [B, L, H]."""
        if self.attention is not None:
            x = self.attention(x, mask)
        B, L, _ = x.shape
        h = x.new_zeros(B, self.cell.hidden)
        c = x.new_zeros(B, self.cell.hidden)
        out = []
        for k in range(L):  # the only Python loop: over the L history steps
            h_new, c_new = self.cell(x[:, k], gaps[:, k], h, c)
            keep = mask[:, k : k + 1]
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            out.append(h)
        return torch.stack(out, dim=1)


EncoderFactory = Callable[..., nn.Module]

ENCODERS: dict[str, tuple[EncoderFactory, str]] = {
    "sa-time-lstm": (SelfAttentiveTimeLSTM, "Self-Attentive Time-LSTM (paper §4.3)"),
    "transformer": (CausalTransformer, "causal Transformer over the history (ablation variant 3)"),
    "lstm-experts": (LSTMExperts, "MoSE's sequential experts: n LSTMs, state [B, n * hidden] "
                                  "(Qin et al. 2020; pair with predictor 'mose')"),
    "mean-pool": (MeanPoolHistory, "mean of the last L steps (the multi-task baselines' "
                                   "'last 10 products & timestamp' input)"),
}
