"""Multi-task objective predictors of the literature: the paper's baselines (§5.2: MMoE,
PLE, Shared-Bottom) and ablation predictors (§5.6: variant 4 Shared-Bottom, variant 5
Cross-Stitch). MoSE lives in deepprl.models.sequential (its experts run over the history).

Every predictor maps user [B, Du] and items [B, C, Di] to y_hat [B, C, K] in (0, 1): the
input of candidate c is x = [user; item_c], and each objective ends in a sigmoid. As in the
MoH, the first layer is split, x W = user W_u + item W_i, so the user part is computed once
per event rather than once per candidate. Experts, gates and towers of one kind run as one
batched matrix product (StackedLinear), never in a Python loop over experts.
See docs/baselines.md for each method's paper, what we implemented and every deviation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _dims(given: Sequence[int] | None, default: int, name: str) -> tuple[int, ...]:
    dims = tuple(given) if given is not None else (default,)
    if not dims or min(dims) < 1:
        raise ValueError(f"{name} must be a non-empty list of positive sizes, got {dims}")
    return dims


class PairLinear(nn.Module):
    """A linear layer on [user; item] per candidate: (user [B, Du], items [B, C, Di]) ->
    [B, C, O]. Same values and initialisation as nn.Linear(Du + Di, O) on the concatenation,
    but the user part is computed once per event."""

    def __init__(self, user_dim: int, item_dim: int, out_dim: int) -> None:
        super().__init__()
        self.user_dim = user_dim
        self.weight = nn.Parameter(torch.empty(user_dim + item_dim, out_dim))  # [Du + Di, O]
        self.bias = nn.Parameter(torch.empty(out_dim))
        bound = 1.0 / math.sqrt(user_dim + item_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if items.shape[1] == 1:  # one candidate (training on logged items): one matmul
            x = torch.cat([user, items[:, 0]], dim=-1)  # [B, Du + Di]
            return torch.addmm(self.bias, x, self.weight)[:, None]  # [B, 1, O]
        user_part = torch.addmm(self.bias, user, self.weight[: self.user_dim])  # [B, O]
        return items @ self.weight[self.user_dim :] + user_part[:, None]  # [B, C, O]


class StackedLinear(nn.Module):
    """n independent linear maps applied at once: x [..., n, I] -> [..., n, O], map j on slot
    j; with shared=True one input x [..., I] goes to every map (a single matmul).
    Each map is initialised like nn.Linear(fan_in, O), fan_in = I unless given (a map that
    is one block of a larger layer)."""

    def __init__(self, n: int, in_dim: int, out_dim: int, *, bias: bool = True,
                 fan_in: int | None = None) -> None:
        super().__init__()
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))  # [n, I, O]
        self.bias = nn.Parameter(torch.empty(n, out_dim)) if bias else None
        bound = 1.0 / math.sqrt(fan_in if fan_in is not None else in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        if shared:
            flat = self.weight.permute(1, 0, 2).reshape(self.in_dim, -1)  # [I, n * O]
            out = (x @ flat).unflatten(-1, (self.n, self.out_dim))  # [..., n, O]
        else:
            out = torch.einsum("...ni,nio->...no", x, self.weight)
        return out + self.bias if self.bias is not None else out


class FeatureNorm(nn.Module):
    """BatchNorm1d over the trailing `shape` (flattened, one statistic per unit), every
    leading row [B, C, ...] a sample: [..., *shape] -> [..., *shape]."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.width = math.prod(shape)
        self.norm = nn.BatchNorm1d(self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.reshape(-1, self.width)).reshape(x.shape)


def maybe_norm(batch_norm: bool, *shape: int) -> nn.Module:
    """FeatureNorm(*shape) with batch_norm, else the identity."""
    return FeatureNorm(*shape) if batch_norm else nn.Identity()


class StackedMLP(nn.Module):
    """n independent MLPs sizes[0] -> ... -> sizes[-1] with ReLU between layers (and after
    the last with final_activation): [..., n, sizes[0]] -> [..., n, sizes[-1]]. A single
    size means no layer (identity). batch_norm puts a BatchNorm before every ReLU."""

    def __init__(self, n: int, sizes: Sequence[int], *, final_activation: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__()
        pairs = list(itertools.pairwise(sizes))
        self.layers = nn.ModuleList(StackedLinear(n, a, b) for a, b in pairs)
        self.final_activation = final_activation
        activated = [i < len(pairs) - 1 or final_activation for i in range(len(pairs))]
        self.norms = nn.ModuleList(maybe_norm(batch_norm and act, n, b)
                                   for act, (_, b) in zip(activated, pairs, strict=True))

    def forward(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            x = layer(x, shared=shared and i == 0)
            if i < last or self.final_activation:
                x = torch.relu(norm(x))
        return x


def mix(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Weighted sums sum_e w_ke v_e: weights [..., K, E], values [..., E, H] (or per-row
    [..., K, E, H]) -> [..., K, H]. Broadcast and sum: with a handful of experts this beats a
    batched matmul of B * C tiny matrices several times over on CPU."""
    if values.dim() == weights.dim():
        values = values.unsqueeze(-3)  # [..., 1, E, H]
    return (weights.unsqueeze(-1) * values).sum(-2)


def towers(n_objectives: int, in_dim: int, tower_dims: Sequence[int], *,
           batch_norm: bool = False) -> StackedMLP:
    """One tower per objective, in_dim -> tower_dims -> 1 logit (ReLU hidden layers)."""
    return StackedMLP(n_objectives, [in_dim, *tower_dims, 1], batch_norm=batch_norm)



class SharedBottom(nn.Module):
    """Shared-Bottom (Caruana 1997; Ruder 2017's hard parameter sharing): one bottom MLP
    shared by all objectives, one tower per objective.

    h = MLP_bottom([user; item]) (ReLU), y_hat_k = sigmoid(tower_k(h)). Defaults: bottom of
    `hidden` units, towers of `tower_hidden`. Also DeepPRL ablation variant 4 (§5.6).
    batch_norm (default off: the paper has none) puts a BatchNorm before every ReLU and gate
    softmax, as torch-rechub's MLP blocks do (used by benchmarks/peer_multitask.py)."""

    def __init__(self, *, user_dim: int, item_dim: int, n_objectives: int, hidden: int = 64,
                 tower_hidden: int = 32, objective_embedding_dim: int = 16,
                 similarity: str = "neg_sq_dist", bottom_dims: Sequence[int] | None = None,
                 tower_dims: Sequence[int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        del objective_embedding_dim, similarity  # the factory's common arguments, unused
        _check_sizes(user_dim=user_dim, item_dim=item_dim, n_objectives=n_objectives)
        bottom = _dims(bottom_dims, hidden, "bottom_dims")
        self.first = PairLinear(user_dim, item_dim, bottom[0])
        self.first_norm = maybe_norm(batch_norm, bottom[0])
        self.bottom = StackedMLP(1, bottom, final_activation=True, batch_norm=batch_norm)
        self.towers = towers(n_objectives, bottom[-1], _dims(tower_dims, tower_hidden,
                                                             "tower_dims"), batch_norm=batch_norm)

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first_norm(self.first(user, items)))  # [B, C, H1]
        h = self.bottom(h[..., None, :])[..., 0, :]  # [B, C, H]
        return torch.sigmoid(self.towers(h, shared=True)[..., 0])  # [B, C, K]


class MultiGateMixtureOfExperts(nn.Module):
    """MMoE (Ma et al. 2018): n experts shared by all objectives, one softmax gate per
    objective over the experts, one tower per objective.

    f_e = MLP_e(x) (ReLU), g_k = softmax(W_gk x) [E], y_hat_k = sigmoid(tower_k(sum_e g_ke f_e))
    with x = [user; item]. Defaults mirror torch-rechub's MMOE used in our peer check: 4
    experts of [hidden] = [64], towers of [tower_hidden] = [32].
    batch_norm (default off: the paper has none) puts a BatchNorm before every ReLU and gate
    softmax, as torch-rechub's MLP blocks do (used by benchmarks/peer_multitask.py)."""

    def __init__(self, *, user_dim: int, item_dim: int, n_objectives: int, hidden: int = 64,
                 tower_hidden: int = 32, objective_embedding_dim: int = 16,
                 similarity: str = "neg_sq_dist", n_experts: int = 4,
                 expert_dims: Sequence[int] | None = None,
                 tower_dims: Sequence[int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        del objective_embedding_dim, similarity
        _check_sizes(user_dim=user_dim, item_dim=item_dim, n_objectives=n_objectives,
                     n_experts=n_experts)
        experts = _dims(expert_dims, hidden, "expert_dims")
        self.n_experts, self.n_objectives, self.expert_first = n_experts, n_objectives, experts[0]
        # experts' first layers and the K gates read the same x: one matmul for all of them
        self.first = PairLinear(user_dim, item_dim, n_experts * (experts[0] + n_objectives))
        self.first_norm = maybe_norm(batch_norm, n_experts * (experts[0] + n_objectives))
        self.experts = StackedMLP(n_experts, experts, final_activation=True,
                                  batch_norm=batch_norm)
        self.towers = towers(n_objectives, experts[-1], _dims(tower_dims, tower_hidden,
                                                              "tower_dims"), batch_norm=batch_norm)
        self.last_gates: torch.Tensor | None = None  # [B, C, K, E] of the last forward

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        E, K = self.n_experts, self.n_objectives
        first = self.first_norm(self.first(user, items))  # [B, C, E * H1 + K * E]
        split = E * self.expert_first
        f = self.experts(torch.relu(first[..., :split]).unflatten(-1, (E, self.expert_first)))
        gates = torch.softmax(first[..., split:].unflatten(-1, (K, E)), dim=-1)  # [B, C, K, E]
        self.last_gates = gates.detach()
        mixed = mix(gates, f)  # [B, C, K, H]
        return torch.sigmoid(self.towers(mixed)[..., 0])  # [B, C, K]


class ExtractionLevel(nn.Module):
    """One level of PLE; alone (last level, no shared gate) it is a CGC (Tang et al. 2020).

    Each objective k owns m specific experts, s experts are shared (E = K m + s). Objective k's
    gate weighs its own and the shared experts, g_k = softmax(W_k x_k) [m + s]; with
    shared_gate, the shared gate weighs all E experts, g_s = softmax(W_s x_s). Inputs: the
    pair (user, items) at the first level (x_k = x_s = [user; item]), else x [B, C, K + 1, D]
    (x_1 .. x_K, then x_s). Output: [B, C, K + 1, H] with shared_gate, else [B, C, K, H]."""

    def __init__(self, *, n_tasks: int, n_specific: int, n_shared: int,
                 expert_dims: tuple[int, ...], shared_gate: bool, in_dim: int = 0,
                 pair_dims: tuple[int, int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        K, m, s = n_tasks, n_specific, n_shared
        E, G, H1 = K * m + s, m + s, expert_dims[0]
        self.sizes = (K, E, G, H1)
        self.n_specific, self.n_shared = m, s
        width = E * H1 + K * G + (E if shared_gate else 0)
        self.pair = PairLinear(*pair_dims, width) if pair_dims is not None else None
        self.pair_norm = maybe_norm(batch_norm and pair_dims is not None, width)
        later = batch_norm and pair_dims is None
        self.expert_norm = maybe_norm(later, E, H1)
        self.task_norm = maybe_norm(later, K, G)
        self.shared_norm = maybe_norm(later and shared_gate, E)
        self.expert_in = StackedLinear(E, in_dim, H1) if pair_dims is None else None
        self.task_gate = StackedLinear(K, in_dim, G) if pair_dims is None else None
        self.shared_gate = nn.Linear(in_dim, E) if pair_dims is None and shared_gate else None
        self.has_shared_gate = shared_gate
        self.experts = StackedMLP(E, expert_dims, final_activation=True, batch_norm=batch_norm)
        self.expert_group: torch.Tensor  # [E]: input slot of each expert (task k, or K: shared)
        self.task_experts: torch.Tensor  # [K, G]: the experts objective k's gate weighs
        self.register_buffer("expert_group", torch.tensor(
            [k for k in range(K) for _ in range(m)] + [K] * s), persistent=False)
        self.register_buffer("task_experts", torch.tensor(
            [[k * m + j for j in range(m)] + [K * m + j for j in range(s)] for k in range(K)]),
            persistent=False)
        self.last_task_gates: torch.Tensor | None = None  # [B, C, K, G]
        self.last_shared_gate: torch.Tensor | None = None  # [B, C, E]

    def _logits(self, inputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Experts' first-layer pre-activations [.., E, H1], task gate logits [.., K, G] and
        shared gate logits [.., E] (or None)."""
        K, E, G, H1 = self.sizes
        if self.pair is not None:
            assert isinstance(inputs, tuple)
            out = self.pair_norm(self.pair(*inputs))  # [B, C, E * H1 + K * G (+ E)]
            experts = out[..., : E * H1].unflatten(-1, (E, H1))
            task = out[..., E * H1 : E * H1 + K * G].unflatten(-1, (K, G))
            shared = out[..., E * H1 + K * G :] if self.has_shared_gate else None
            return experts, task, shared
        assert isinstance(inputs, torch.Tensor)
        assert self.expert_in is not None and self.task_gate is not None
        experts = self.expert_norm(self.expert_in(inputs[..., self.expert_group, :]))  # [.,E,H1]
        task = self.task_norm(self.task_gate(inputs[..., :K, :]))  # [B, C, K, G]
        shared = self.shared_norm(self.shared_gate(inputs[..., K, :])) \
            if self.shared_gate is not None else None
        return experts, task, shared

    def forward(self, inputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        pre, task_logits, shared_logits = self._logits(inputs)
        f = self.experts(torch.relu(pre))  # [B, C, E, H]
        task_gates = torch.softmax(task_logits, dim=-1)  # [B, C, K, G]
        self.last_task_gates = task_gates.detach()
        out = mix(task_gates, f[..., self.task_experts, :])  # [B, C, K, H]
        if shared_logits is None:
            return out  # [B, C, K, H]
        shared_gate = torch.softmax(shared_logits, dim=-1)  # [B, C, E]
        self.last_shared_gate = shared_gate.detach()
        shared = mix(shared_gate[..., None, :], f)  # [B, C, 1, H]
        return torch.cat([out, shared], dim=-2)  # [B, C, K + 1, H]


class ProgressiveLayeredExtraction(nn.Module):
    """PLE (Tang et al. 2020): n_levels extraction levels (CGC units) stacked; objective k's
    path reads its own previous output, the shared experts read the shared one; the last
    level has no shared gate; towers on the last level's per-objective outputs.

    Defaults: 2 levels, 1 specific expert per objective and 2 shared experts (4 experts at
    K = 2, like the MMoE), experts of [hidden], towers of [tower_hidden]. n_levels=1 is CGC.
    batch_norm (default off: the paper has none) puts a BatchNorm before every ReLU and gate
    softmax, as torch-rechub's MLP blocks do (used by benchmarks/peer_multitask.py)."""

    def __init__(self, *, user_dim: int, item_dim: int, n_objectives: int, hidden: int = 64,
                 tower_hidden: int = 32, objective_embedding_dim: int = 16,
                 similarity: str = "neg_sq_dist", n_levels: int = 2, n_specific: int = 1,
                 n_shared: int = 2, expert_dims: Sequence[int] | None = None,
                 tower_dims: Sequence[int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        del objective_embedding_dim, similarity
        _check_sizes(user_dim=user_dim, item_dim=item_dim, n_objectives=n_objectives,
                     n_levels=n_levels, n_specific=n_specific, n_shared=n_shared)
        experts = _dims(expert_dims, hidden, "expert_dims")
        self.levels = nn.ModuleList(
            ExtractionLevel(n_tasks=n_objectives, n_specific=n_specific, n_shared=n_shared,
                            expert_dims=experts, shared_gate=j < n_levels - 1, in_dim=experts[-1],
                            pair_dims=(user_dim, item_dim) if j == 0 else None,
                            batch_norm=batch_norm)
            for j in range(n_levels))
        self.towers = towers(n_objectives, experts[-1], _dims(tower_dims, tower_hidden,
                                                              "tower_dims"), batch_norm=batch_norm)

    @property
    def last_gates(self) -> list[torch.Tensor | None]:
        """Per level, the objectives' gates [B, C, K, m + s] of the last forward."""
        return [level.last_task_gates for level in self._levels()]

    @property
    def last_shared_gates(self) -> list[torch.Tensor | None]:
        """Per non-final level, the shared gate [B, C, E] of the last forward."""
        return [level.last_shared_gate for level in self._levels()[:-1]]

    def _levels(self) -> list[ExtractionLevel]:
        return [level for level in self.levels if isinstance(level, ExtractionLevel)]

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        x = self.levels[0]((user, items))
        for level in self.levels[1:]:
            x = level(x)  # [B, C, K + 1, H], then [B, C, K, H] at the last level
        return torch.sigmoid(self.towers(x)[..., 0])  # [B, C, K]


def cross_stitch_init(n: int, self_weight: float) -> torch.Tensor:
    """[n, n] mixing matrix: self_weight on the diagonal, the rest of each row spread evenly
    (rows sum to 1; Misra et al. use (0.9, 0.1) for two tasks)."""
    if n == 1:
        return torch.ones(1, 1)
    off = (1.0 - self_weight) / (n - 1)
    return torch.full((n, n), off) + (self_weight - off) * torch.eye(n)


class CrossStitch(nn.Module):
    """Cross-Stitch networks (Misra et al. 2016): one column (MLP) per objective; after every
    hidden layer a cross-stitch unit mixes the columns' activations,
    h~_k = sum_l alpha_kl h_l, with a learned [K, K] matrix alpha per unit.

    Columns: [user; item] -> column_dims (default [hidden, tower_hidden]) -> 1 logit, ReLU
    between layers; alpha starts at self_weight (0.9) on the diagonal, (1 - 0.9) / (K - 1)
    off it. DeepPRL ablation variant 5 (§5.6)."""

    def __init__(self, *, user_dim: int, item_dim: int, n_objectives: int, hidden: int = 64,
                 tower_hidden: int = 32, objective_embedding_dim: int = 16,
                 similarity: str = "neg_sq_dist", column_dims: Sequence[int] | None = None,
                 self_weight: float = 0.9) -> None:
        super().__init__()
        del objective_embedding_dim, similarity
        _check_sizes(user_dim=user_dim, item_dim=item_dim, n_objectives=n_objectives)
        dims = tuple(column_dims) if column_dims is not None else (hidden, tower_hidden)
        if not dims or min(dims) < 1:
            raise ValueError(f"column_dims must be a non-empty list of positive sizes, got {dims}")
        self.n_objectives, self.first_dim = n_objectives, dims[0]
        self.first = PairLinear(user_dim, item_dim, n_objectives * dims[0])
        self.hidden_layers = nn.ModuleList(
            StackedLinear(n_objectives, a, b) for a, b in itertools.pairwise(dims))
        self.out = StackedLinear(n_objectives, dims[-1], 1)
        self.stitches = nn.ParameterList(
            nn.Parameter(cross_stitch_init(n_objectives, self_weight)) for _ in dims)

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(user, items)).unflatten(-1, (self.n_objectives,
                                                               self.first_dim))  # [B, C, K, H1]
        h = torch.einsum("kl,...lh->...kh", self.stitches[0], h)
        for layer, alpha in zip(self.hidden_layers, self.stitches[1:], strict=True):
            h = torch.einsum("kl,...lh->...kh", alpha, torch.relu(layer(h)))  # [B, C, K, H]
        return torch.sigmoid(self.out(h)[..., 0])  # [B, C, K]
