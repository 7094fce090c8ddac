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
        # padded rows attend to themselves; eye made as float (onnxruntime has no bool EyeLike)
        allowed = allowed | torch.eye(L, device=x.device).bool()
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
        x_part, t_gate = self.project(x[:, None], dt[:, None])
        return self.recur(x_part[:, 0], None if t_gate is None else t_gate[:, 0], h, c)

    def project(self, x: torch.Tensor, dt: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Everything that does not depend on h, for all L steps at once:
        x [B, L, D], dt [B, L] -> (x W_x + b [B, L, 4H], time gate T [B, L, H] or None)."""
        x_part = self.x_gates(x)
        if not self.use_time_gate:
            return x_part, None
        return x_part, torch.sigmoid(self.x_time(x) + torch.sigmoid(self.dt_time(dt[..., None])))

    def recur(self, x_part: torch.Tensor, t_gate: torch.Tensor | None, h: torch.Tensor,
              c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from the projected input x_part [B, 4H] and T [B, H] (or [B, 1]; None
        for 1) -> (h, c)."""
        gates = torch.addmm(x_part, h, self.h_gates.weight.t())  # [B, 4H]
        # split/chunk, not slicing: the backward of a slice fills a zero tensor of the whole
        # input per slice, which cost more than the step itself
        ifo, g = gates.split([3 * self.hidden, self.hidden], dim=-1)
        i, f, o = torch.sigmoid(ifo).chunk(3, dim=-1)
        candidate = i * torch.tanh(g)
        if t_gate is not None:
            candidate = candidate * t_gate
        c = f * c + candidate
        return o * torch.tanh(c), c


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
        """The state after the last step [B, H] (only that one is kept: no [B, L, H] stack
        to build and back-propagate through)."""
        return self._run(x, gaps, mask, every_step=False)

    def states(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], gaps [B, L], mask [B, L] -> the state after every step [B, L, H]."""
        return self._run(x, gaps, mask, every_step=True)

    def _run(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor, *,
             every_step: bool) -> torch.Tensor:
        if self.attention is not None:
            x = self.attention(x, mask)
        B, L, _ = x.shape
        x_part, t_gate = self.cell.project(x, gaps)  # [B, L, 4H], [B, L, H]: one matmul each
        h = x.new_zeros(B, self.cell.hidden)
        c = x.new_zeros(B, self.cell.hidden)
        # unbind, not x_part[:, k]: the backward of a slice fills a zero tensor of the whole
        # [B, L, 4H] per step; unbind's backward is one stack
        x_steps = x_part.unbind(1)
        out = []
        # a trace (deepprl.export) records the general loop below, right for any mask: this
        # branch's test and its skipped steps would be fixed by the tracing example
        if L > 1 and not torch.jit.is_tracing() and bool((mask[:, 1:] >= mask[:, :-1]).all()):
            # left-padded histories (every history built from the log): from h = c = 0, a
            # padded step whose candidate is zeroed (through T) leaves h = c = 0, so no
            # per-step select is needed; leading steps padded in every row are skipped
            first = int(mask.any(0).to(torch.int8).argmax()) if bool(mask.any()) else L
            out = [h] * first if every_step else []
            live = mask[..., None].to(x.dtype)  # [B, L, 1]
            t_steps = (live if t_gate is None else t_gate * live).unbind(1)
            for k in range(first, L):  # the only Python loop: over the L history steps
                h, c = self.cell.recur(x_steps[k], t_steps[k], h, c)
                if every_step:
                    out.append(h)
        else:
            keeps = mask[..., None].unbind(1)
            t_list = [None] * L if t_gate is None else list(t_gate.unbind(1))
            for k in range(L):  # histories with holes: masked steps keep the previous state
                h_new, c_new = self.cell.recur(x_steps[k], t_list[k], h, c)
                h, c = torch.where(keeps[k], h_new, h), torch.where(keeps[k], c_new, c)
                if every_step:
                    out.append(h)
        return torch.stack(out, dim=1) if every_step else h


EncoderFactory = Callable[..., nn.Module]

ENCODERS: dict[str, tuple[EncoderFactory, str]] = {
    "sa-time-lstm": (SelfAttentiveTimeLSTM, "Self-Attentive Time-LSTM (paper §4.3)"),
    "transformer": (CausalTransformer, "causal Transformer over the history (ablation variant 3)"),
    "lstm-experts": (LSTMExperts, "MoSE's sequential experts: n LSTMs, state [B, n * hidden] "
                                  "(Qin et al. 2020; pair with predictor 'mose')"),
    "mean-pool": (MeanPoolHistory, "mean of the last L steps (the multi-task baselines' "
                                   "'last 10 products & timestamp' input)"),
}
