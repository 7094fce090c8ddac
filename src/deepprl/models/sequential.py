"""Sequence models that stand in for the Self-Attentive Time-LSTM, and MoSE.

- LSTMExperts (encoder "lstm-experts") + MixtureOfSequentialExperts (predictor "mose"):
  MoSE (Qin et al. 2020) split across our encoder/predictor boundary. The encoder runs
  n_experts LSTMs over the history and returns their last states side by side,
  [B, n_experts * H] (ModelConfig.hidden is H, the size of ONE expert); the predictor's
  per-objective softmax gates mix those states and towers predict each objective.
- CausalTransformer (encoder "transformer"): DeepPRL ablation variant 3 (§5.6).

Encoders map (x [B, L, D], gaps [B, L], mask [B, L]) -> state [B, out_dim]; histories are
left-padded (mask False on padding). The gap of each step already enters x through the
step's context (log_gap_hours), so these encoders do not read `gaps` separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from deepprl.models.multitask import PairLinear, StackedLinear, StackedMLP, mix

MOSE_EXPERTS = 4
"""Experts of MoSE, shared by the encoder and the predictor (their factories take no count)."""


class LSTMExperts(nn.Module):
    """MoSE's sequential experts: n_experts independent LSTMs over the history.

    Expert e: i, f, o, g = x_k W_e + h_{k-1} U_e + b_e; c_k = s(f) c_{k-1} + s(i) tanh(g);
    h_k = s(o) tanh(c_k). A masked step leaves (h, c) unchanged. State: [h^1_L; ..; h^E_L]
    [B, E * H]. All experts advance together (one batched product per step); weights are
    initialised like nn.LSTM, U(-1/sqrt(H), 1/sqrt(H)). use_attention, use_time_gate and
    similarity belong to the encoder factory's signature and are ignored: MoSE's experts
    are plain LSTMs."""

    def __init__(self, input_dim: int, hidden: int, *, use_attention: bool = True,
                 use_time_gate: bool = True, similarity: str = "neg_sq_dist",
                 n_experts: int = MOSE_EXPERTS) -> None:
        super().__init__()
        del use_attention, use_time_gate, similarity
        if min(input_dim, hidden, n_experts) < 1:
            raise ValueError("input_dim, hidden and n_experts must be >= 1")
        self.n_experts, self.hidden = n_experts, hidden
        self.x_gates = nn.Linear(input_dim, n_experts * 4 * hidden)  # W_e, b_e of every expert
        self.h_gates = nn.Parameter(torch.empty(n_experts, hidden, 4 * hidden))  # U_e
        bound = 1.0 / math.sqrt(hidden)
        for p in (self.x_gates.weight, self.x_gates.bias, self.h_gates):
            nn.init.uniform_(p, -bound, bound)
        self.out_dim = n_experts * hidden

    def forward(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.states(x, gaps, mask)[:, -1].flatten(1)  # [B, E * H]

    def states(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], mask [B, L] -> every expert's state after every step [B, L, E, H]
        (gaps: unused, see the module docstring)."""
        B, L, _ = x.shape
        E, H = self.n_experts, self.hidden
        x_part = self.x_gates(x).unflatten(-1, (E, 4 * H))  # [B, L, E, 4H], all steps at once
        h = x.new_zeros(B, E, H)
        c = x.new_zeros(B, E, H)
        out = []
        for k in range(L):  # the only Python loop: over the L history steps
            gates = x_part[:, k] + torch.einsum("beh,ehg->beg", h, self.h_gates)  # [B, E, 4H]
            i, f, o, g = gates.chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            keep = mask[:, k, None, None]
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            out.append(h)
        return torch.stack(out, dim=1)


class MixtureOfSequentialExperts(nn.Module):
    """MoSE's gates and towers (Qin et al. 2020), on top of the LSTMExperts encoder.

    user = [h^1 .. h^E (the experts' states, E * H); u (the rest: user embedding, context)].
    Objective k: g_k = softmax(W_gk [u; item]) [E] (the gate reads the event being predicted,
    as MMoE's gate reads the current input), m_k = sum_e g_ke h^e, and
    y_hat_k = sigmoid(tower_k([m_k; u; item])), towers of [tower_hidden].
    Requires the "lstm-experts" encoder with the same `hidden` and n_experts."""

    requires_encoder = "lstm-experts"

    def __init__(self, *, user_dim: int, item_dim: int, n_objectives: int, hidden: int = 64,
                 tower_hidden: int = 32, objective_embedding_dim: int = 16,
                 similarity: str = "neg_sq_dist", n_experts: int = MOSE_EXPERTS,
                 tower_dims: Sequence[int] | None = None) -> None:
        super().__init__()
        del objective_embedding_dim, similarity
        rest = user_dim - n_experts * hidden
        if rest < 1 or min(item_dim, n_objectives, hidden, n_experts) < 1:
            raise ValueError(
                f"mose: user_dim {user_dim} must hold n_experts * hidden = {n_experts * hidden} "
                "expert states and the user/context part: use encoder 'lstm-experts' with the "
                "same hidden, and size the state by the encoder's out_dim")
        dims = tuple(tower_dims) if tower_dims is not None else (tower_hidden,)
        if not dims or min(dims) < 1:
            raise ValueError(f"tower_dims must be a non-empty list of positive sizes, got {dims}")
        self.n_experts, self.hidden, self.n_objectives = n_experts, hidden, n_objectives
        self.gate = PairLinear(rest, item_dim, n_objectives * n_experts)
        # tower_k's first layer on [m_k; u; item], split in three blocks (u once per event)
        fan_in = hidden + rest + item_dim
        self.tower_mixed = StackedLinear(n_objectives, hidden, dims[0], fan_in=fan_in)
        self.tower_user = StackedLinear(n_objectives, rest, dims[0], bias=False, fan_in=fan_in)
        self.tower_item = StackedLinear(n_objectives, item_dim, dims[0], bias=False,
                                        fan_in=fan_in)
        self.towers = StackedMLP(n_objectives, [*dims, 1])
        self.last_gates: torch.Tensor | None = None  # [B, C, K, E] of the last forward

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        E, H, K = self.n_experts, self.hidden, self.n_objectives
        experts = user[:, : E * H].unflatten(-1, (E, H))  # [B, E, H]
        rest = user[:, E * H :]  # [B, Du']
        gates = torch.softmax(self.gate(rest, items).unflatten(-1, (K, E)), dim=-1)  # [B,C,K,E]
        self.last_gates = gates.detach()
        mixed = mix(gates, experts[:, None])  # [B, C, K, H]
        t = (self.tower_mixed(mixed) + self.tower_user(rest, shared=True)[:, None]
             + self.tower_item(items, shared=True))  # [B, C, K, T]
        return torch.sigmoid(self.towers(torch.relu(t))[..., 0])  # [B, C, K]


class CausalTransformer(nn.Module):
    """A small causal Transformer encoder over the history (DeepPRL ablation variant 3).

    z_k = W_in x_k + p_{L-1-k} (learned position embedding, counted back from the most
    recent step, so left padding does not shift positions); n_layers pre-norm
    nn.TransformerEncoderLayer blocks (n_heads heads, feed-forward 2 d, no dropout) in which
    step k attends to existing steps i <= k, and to itself; state = W_out z at the last
    existing step [B, hidden]; a history with no step gives the zero state, as the
    Time-LSTM's. use_attention, use_time_gate and similarity are ignored."""

    def __init__(self, input_dim: int, hidden: int, *, use_attention: bool = True,
                 use_time_gate: bool = True, similarity: str = "neg_sq_dist",
                 n_layers: int = 2, n_heads: int = 4, model_dim: int | None = None,
                 max_length: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        del use_attention, use_time_gate, similarity
        d = model_dim if model_dim is not None else n_heads * math.ceil(hidden / n_heads)
        if min(input_dim, hidden, n_layers, n_heads, d, max_length) < 1 or d % n_heads:
            raise ValueError(f"transformer: need positive sizes and model_dim ({d}) divisible "
                             f"by n_heads ({n_heads})")
        self.n_heads, self.max_length = n_heads, max_length
        self.input = nn.Linear(input_dim, d)
        self.position = nn.Embedding(max_length, d)
        layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=2 * d, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d),
                                            enable_nested_tensor=False)
        self.output = nn.Linear(d, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.states(x, gaps, mask)  # [B, L, H]
        B, L, _ = states.shape
        last = (L - 1) - mask.flip(-1).to(torch.int8).argmax(-1)  # last existing step [B]
        state = states[torch.arange(B, device=x.device), last]
        return state * mask.any(-1, keepdim=True)  # [B, H]; zeros for an empty history

    def states(self, x: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], mask [B, L] -> the output at every step [B, L, H] (gaps: unused)."""
        length = x.shape[1]
        if length > self.max_length:
            raise ValueError(f"history of {length} steps exceeds max_length {self.max_length}")
        steps_back = torch.arange(length - 1, -1, -1, device=x.device)
        z = self.input(x) + self.position(steps_back)  # [B, L, d]
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        # eye made as float: onnxruntime has no bool EyeLike (deepprl.export)
        allowed = (causal & mask[:, None, :]) | torch.eye(length, device=x.device).bool()
        blocked = ~allowed.repeat_interleave(self.n_heads, dim=0)  # [B * heads, L, L]
        return self.output(self.blocks(z, mask=blocked))  # [B, L, H]
