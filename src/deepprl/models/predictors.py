"""Objective predictors: (user representation, item embeddings) -> y_hat in [0, 1]^K.

Every predictor maps user [B, Du] and items [B, C, Di] to y_hat [B, C, K].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from deepprl.models.layers import InferenceCache, similarity_scores, softmax_last
from deepprl.models.multitask import (
    CrossStitch,
    MultiGateMixtureOfExperts,
    ProgressiveLayeredExtraction,
    SharedBottom,
)
from deepprl.models.sequential import MixtureOfSequentialExperts

# sigmoid(x) - 0.5 for x ~ N(0, 1): its std and mean |.| (Monte Carlo, 10^7 draws)
CODE_STD, CODE_MEAN_ABS = 0.2082, 0.1748
# each generated tower layer starts at std TOWER_GAIN / sqrt(fan_in): chosen by measurement
# (docs/model.md, "Stage 1"; 1.0, PyTorch's default 0.577, 0.35, 0.2 and 0.1 measured)
TOWER_GAIN = 0.2


class CentredSigmoid(nn.Module):
    """sigmoid(x) - 0.5: the paper's sigmoid, shifted so that codes have mean 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) - 0.5


class MixtureOfHyperNetwork(nn.Module):
    """Mixture of HyperNetwork (paper §4.2).

    One hypernetwork (3 FC layers, sigmoid) maps a learned embedding of objective k to the
    parameters of tower k, an MLP of `tower_layers` ReLU layers on [s_u; s_i]:
    widths (hidden, ..., hidden, tower_hidden), e.g. 1: relu([s_u; s_i] W_k + b_k) -> z_k [T]
    (the paper's one layer), 2: [hidden] then [T], like every baseline's path per objective.
    A mixture-attention layer lets objective m attend over all towers,
    e_ml = softmax_l(sim(q(z_m), key(z_l))), and y_hat_m = sigmoid(w_m . sum_l e_ml z_l + c_m).
    With self_weight w > 0 a constant log prior joins the scores, softmax_l(sim + log p_ml)
    with p_mm = w and p_ml = (1 - w) / (K - 1): where the towers are still alike every
    objective reads mostly its own tower, as a cross-stitch unit starts; the paper's
    attention starts uniform (its towers start small, so their similarities are ~0).

    Initialisation (docs/model.md, "Stage 1"): with plain sigmoid codes (all ~0.5) every
    objective got nearly the same tower (cosine 0.9999) and one Adam step moved each
    generated weight by ~33 lr (a sum of H positive codes). Here:
    - objective embeddings are orthogonal rows of norm sqrt(E) (K <= E; else N(0, 1));
    - the hidden activations are centred sigmoids, sigmoid(x) - 0.5, the hidden biases
      start at 0 and each hidden layer's weights at N(0, 1 / (fan_in var(input))), so the
      pre-activations have unit variance and the codes h (std CODE_STD) are mean-zero and
      nearly orthogonal across objectives;
    - the generated parameters are scale * (A h + a): scale = 1 / (1 + H CODE_MEAN_ABS), so
      that an Adam step on A and a (each entry moves by ~lr) moves a generated weight by
      ~lr; a starts at 0 (no component shared by the towers) and the rows of A that
      generate tower layer j at N(0, TOWER_GAIN^2 / (fan_in_j scale^2 H CODE_STD^2)), so
      each generated layer has std ~TOWER_GAIN / sqrt(fan_in_j) (fan_in_1 = Du + Di, then
      the previous layer's width): a linear layer's 1 / sqrt(fan_in) rule, with a gain
      below PyTorch's default 0.577, since Adam moves every weight by ~lr per step
      whatever its scale, a smaller start lets the data shape the towers sooner.
    Tested in tests/test_models.py: tower cosine, weight scale per layer and Adam step size
    at init.
    """

    log_prior: torch.Tensor

    def __init__(self, *, user_dim: int, item_dim: int, n_objectives: int, hidden: int = 64,
                 tower_hidden: int = 32, objective_embedding_dim: int = 16,
                 similarity: str = "neg_sq_dist", tower_layers: int = 2,
                 self_weight: float = 0.0) -> None:
        super().__init__()
        if tower_layers < 1:
            raise ValueError(f"tower_layers must be >= 1, got {tower_layers}")
        self.user_dim, self.item_dim, self.tower_hidden = user_dim, item_dim, tower_hidden
        E, H = objective_embedding_dim, hidden
        widths = [hidden] * (tower_layers - 1) + [tower_hidden]
        # (fan_in, width) of every generated layer; the first one's fan_in is Du + Di
        self.layer_shapes = list(zip([user_dim + item_dim, *widths[:-1]], widths, strict=True))
        self.objective_embedding = nn.Parameter(_spread_rows(n_objectives, E))  # [K, E]
        sizes = [(fan_in + 1) * width for fan_in, width in self.layer_shapes]
        self.hypernetwork = nn.Sequential(nn.Linear(E, H), CentredSigmoid(), nn.Linear(H, H),
                                          CentredSigmoid(), nn.Linear(H, sum(sizes)))
        self.scale = 1.0 / (1.0 + H * CODE_MEAN_ABS)
        with torch.no_grad():
            first, second, last = (m for m in self.hypernetwork if isinstance(m, nn.Linear))
            nn.init.normal_(first.weight, std=E**-0.5)  # inputs of unit variance
            nn.init.normal_(second.weight, std=1.0 / (H**0.5 * CODE_STD))
            for rows, (fan_in, _) in zip(last.weight.split(sizes), self.layer_shapes,
                                         strict=True):
                nn.init.normal_(rows, std=TOWER_GAIN / (fan_in**0.5 * self.scale * H**0.5
                                                          * CODE_STD))
            for layer in (first, second, last):
                layer.bias.zero_()
        self.query = nn.Linear(tower_hidden, tower_hidden, bias=False)
        self.key = nn.Linear(tower_hidden, tower_hidden, bias=False)
        self.head = nn.Parameter(torch.randn(n_objectives, tower_hidden) / tower_hidden**0.5)
        self.head_bias = nn.Parameter(torch.zeros(n_objectives))
        self.similarity = similarity
        # a constant added to the K x K attention scores (not saved: it follows from the
        # config); 0 everywhere when self_weight is 0, the paper's attention
        self.register_buffer("log_prior", _self_prior(n_objectives, self_weight),
                             persistent=False)
        self.self_weight = self_weight
        self.last_attention: torch.Tensor | None = None
        self._towers: InferenceCache[list[torch.Tensor]] = InferenceCache()
        self._sources: list[torch.Tensor] | None = None
        self._layout: InferenceCache[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[
            tuple[torch.Tensor, torch.Tensor]], torch.Tensor]] = InferenceCache()

    def tower_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first generated layer: (W_user [K, Du, T1], W_item [K, Di, T1], b [K, T1])."""
        w_user, w_item, bias = self.generated_layers()[:3]
        return w_user, w_item, bias

    def generated_layers(self) -> list[torch.Tensor]:
        """Every generated tensor: W_user [K, Du, T1], W_item [K, Di, T1], b_1 [K, T1], then
        per later layer j its W_j [K, T_{j-1}, T_j] and b_j [K, T_j]. Without gradients
        (inference) they are generated once and reused until a parameter changes: an
        optimiser step or a loaded state bumps the tensors' versions."""
        return self._towers.get(self.projection_sources(), self._generate)

    def _generate(self) -> list[torch.Tensor]:
        params = self.scale * self.hypernetwork(self.objective_embedding)  # [K, P]
        K = params.shape[0]
        sizes = [(fan_in + 1) * width for fan_in, width in self.layer_shapes]
        out: list[torch.Tensor] = []
        for chunk, (fan_in, width) in zip(params.split(sizes, dim=1), self.layer_shapes,
                                          strict=True):
            w = chunk.view(K, fan_in + 1, width)  # rows: the weights, then the bias
            if not out:
                out += [w[:, : self.user_dim], w[:, self.user_dim : -1], w[:, -1]]
            else:
                out += [w[:, :-1], w[:, -1]]
        return out

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        w_user, w_item, bias, *later = self.generated_layers()
        K, T1 = bias.shape
        # [s_u; s_i] W_k split in two, so the user part is computed once per event; each
        # part is one matmul against the K towers side by side
        user_part = (user @ w_user.permute(1, 0, 2).reshape(-1, K * T1)).view(-1, K, T1) + bias
        B, C, Di = items.shape
        item_part = (items.reshape(B * C, Di) @ w_item.permute(1, 0, 2).reshape(Di, K * T1)
                     ).view(B, C, K, T1)
        z = torch.relu(item_part + user_part[:, None])  # [B, C, K, T1]
        for w, b in zip(later[::2], later[1::2], strict=True):
            # tower k's layer on its own input: one batched matmul over the K towers
            z = torch.relu(torch.bmm(z.reshape(B * C, K, -1).transpose(0, 1), w)  # [K, BC, Tj]
                           .transpose(0, 1).reshape(B, C, K, -1) + b)  # [B, C, K, Tj]
        scores = similarity_scores(self.query(z), self.key(z), self.similarity)  # [B, C, K, K]
        if self.self_weight:
            scores = scores + self.log_prior
        attention = softmax_last(scores)
        self.last_attention = attention.detach()
        # w_m . sum_l e_ml z_l = sum_l e_ml (z_l . w_m): project every tower on every head
        # first (one matmul), so no [B, C, K, T] mixture and no B*C tiny K x K matmuls
        on_heads = (z @ self.head.t()).transpose(-1, -2)  # [B, C, K, K]: [m, l] = z_l . w_m
        return torch.sigmoid((attention * on_heads).sum(-1) + self.head_bias)  # [B, C, K]

    # -- serving (no gradients): the arithmetic of forward, regrouped --------------------
    def projection_sources(self) -> list[torch.Tensor]:
        """The parameters the generated towers (and so item_projection) depend on."""
        if self._sources is None:  # the same Parameter objects for the module's life
            self._sources = [self.objective_embedding, *self.hypernetwork.parameters()]
        return self._sources

    def item_projection(self, items: torch.Tensor) -> torch.Tensor:
        """items [N, Di] -> [N, K * T1]: the item half of every tower's first layer, s_i
        W_item, towers side by side. It depends on parameters only, so a caller may compute
        it once for a whole catalogue (PredictorModel.predict does) and index it."""
        return items @ self._inference_weights()[1]

    def forward_projected(self, user: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
        """forward for serving, without gradients, from user [B, Du] and item_projection's
        rows for the
        candidates item_part [B, C, K * T1] (a scratch tensor of the caller's: it is
        overwritten) -> y_hat [B, C, K]. Equal to forward up to
        float rounding (tests/test_models.py): every tower's layer is one matmul of the
        same products, query, key and heads are one matmul, the K x K similarity is
        written out instead of cdist. Fewer operators and allocations: a request's
        latency (docs/serving.md)."""
        w_user, _, bias, later, heads = self._inference_weights()
        K, T1 = self.objective_embedding.shape[0], self.layer_shapes[0][1]
        B, C, _ = item_part.shape
        user_part = torch.addmm(bias, user, w_user)  # [B, K T1]
        z = item_part.add_(user_part[:, None]).relu_()  # [B, C, K T1], in place
        z = z.view(B * C, K, T1).transpose(0, 1)  # [K, BC, T1]: tower k's inputs (a view)
        for b, w in later:
            z = torch.relu_(torch.baddbmm(b, z, w))  # [K, BC, Tj]
        T = z.shape[-1]
        projected = z @ heads  # [K, BC, 2T + K + pad]: query, key, z_l . w_m, zeros
        q, key, on_heads = projected[..., : 2 * T + K].split([T, T, K], dim=-1)
        if self.similarity == "dot":
            scores = (q[:, None] * key[None]).sum(-1)  # [m, l, BC]
        else:
            diff = q[:, None] - key[None]  # [m, l, BC, T]
            scores = diff.mul_(diff).sum(-1).neg_()
        scores = scores.div_(T**0.5)
        if self.self_weight:
            scores = scores.add_(self.log_prior[:, :, None])  # [m, l, BC]
        # softmax_last's arithmetic over l, in this layout
        e = (scores - scores.amax(1, keepdim=True)).exp_()
        attention = e.div_(e.sum(1, keepdim=True))  # [m, l, BC]
        self.last_attention = attention.permute(2, 0, 1).reshape(B, C, K, K)
        # sum_l e_ml (z_l . w_m): on_heads [l, BC, m] -> [m, l, BC]
        mixed = (attention * on_heads.permute(2, 0, 1)).sum(1)  # [m, BC]
        return torch.sigmoid_(mixed.add_(self.head_bias[:, None])).t().reshape(B, C, K)

    def _inference_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                          list[tuple[torch.Tensor, torch.Tensor]],
                                          torch.Tensor]:
        """The generated layers laid out for forward_projected, cached like them: W_user
        [Du, K T1], W_item [Di, K T1], b_1 [K T1], per later layer (b_j [K, 1, T_j], W_j
        [K, T_{j-1}, T_j]), and [query^T | key^T | head^T | 0] [T, 2T + K + pad]."""
        sources = [*self.projection_sources(), self.query.weight, self.key.weight, self.head]
        return self._layout.get(sources, self._lay_out)

    def _lay_out(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        w_user, w_item, bias, *later = self.generated_layers()
        K, T1 = bias.shape
        flat = [w.permute(1, 0, 2).reshape(-1, K * T1).contiguous() for w in (w_user, w_item)]
        layers = [(b[:, None].contiguous(), w.contiguous())
                  for w, b in zip(later[::2], later[1::2], strict=True)]
        T = self.tower_hidden
        # zero columns up to a multiple of 8: a width of 2T + K (66) made the matmul 1.5-4x
        # slower than 72 on this CPU's kernels (measured; docs/serving.md)
        pad = self.head.new_zeros(T, -(2 * T + K) % 8)
        heads = torch.cat([self.query.weight.t(), self.key.weight.t(), self.head.t(), pad],
                          dim=1)
        return flat[0], flat[1], bias.reshape(K * T1).contiguous(), layers, heads.contiguous()


def _self_prior(k: int, self_weight: float) -> torch.Tensor:
    """[K, K] log prior of the mixture attention: softmax over l of it is self_weight at
    l = m and (1 - self_weight) / (K - 1) elsewhere; zeros (no prior) for self_weight 0."""
    prior = torch.zeros(k, k)
    if self_weight and k > 1:
        prior += math.log((1.0 - self_weight) / (k - 1))
        prior.fill_diagonal_(math.log(self_weight))
    return prior


def _spread_rows(n: int, dim: int) -> torch.Tensor:
    """[n, dim] rows of norm sqrt(dim) (unit-variance entries), orthogonal when n <= dim."""
    rows = torch.randn(n, dim)
    if n <= dim:
        q, _ = torch.linalg.qr(rows.t())  # [dim, n]: orthonormal columns
        rows = q.t() * dim**0.5
    return rows


PredictorFactory = Callable[..., nn.Module]

PREDICTORS: dict[str, tuple[PredictorFactory, str]] = {
    "moh": (MixtureOfHyperNetwork, "Mixture of HyperNetwork with mixture attention (paper §4.2)"),
    "shared-bottom": (SharedBottom, "Shared-Bottom, one tower per objective (Caruana 1997; "
                                    "ablation variant 4)"),
    "mmoe": (MultiGateMixtureOfExperts, "Multi-gate Mixture-of-Experts (Ma et al. 2018)"),
    "ple": (ProgressiveLayeredExtraction, "Progressive Layered Extraction (Tang et al. 2020)"),
    "cross-stitch": (CrossStitch, "Cross-Stitch columns (Misra et al. 2016; ablation variant 5)"),
    "mose": (MixtureOfSequentialExperts, "Mixture of Sequential Experts, gates and towers "
                                         "(Qin et al. 2020; needs encoder 'lstm-experts')"),
}
