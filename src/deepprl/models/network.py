"""The embedding layer plus a registered encoder and predictor: the stage-1 model.

Inputs are a Batch (deepprl.data.sequences) and candidate items [B, C]; outputs are the
user state s_{u,t} [B, S] (for the weight policy) and predictions y_hat [B, C, K].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepprl.config import ModelConfig
from deepprl.data.sequences import Batch
from deepprl.models.encoders import ENCODERS
from deepprl.models.layers import InferenceCache
from deepprl.models.predictors import PREDICTORS, MixtureOfHyperNetwork

ITEM_PART_MAX_FLOATS = 1 << 25
"""Largest cached table of the MoH's item halves, [I + 1, K T1] (128 MiB of float32):
beyond it each call projects its own candidates."""
PREDICT_CHUNK_CANDIDATES = 4096
"""Candidate rows (batch rows x candidates) of one inference pass of the MoH."""


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about the data it is built for; saved with the run."""

    n_users: int
    n_items: int
    n_objectives: int
    user_features: int
    item_features: int
    context_features: int


class PredictorModel(nn.Module):
    """Embedding layer -> encoder (user state) -> predictor (objective values)."""

    def __init__(self, *, config: ModelConfig, shape: DataShape,
                 user_features: torch.Tensor, item_features: torch.Tensor) -> None:
        super().__init__()
        if config.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {config.encoder!r}; expected {sorted(ENCODERS)}")
        if config.predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {config.predictor!r}; "
                             f"expected {sorted(PREDICTORS)}")
        self.config, self.shape = config, shape
        self.user_feature_table: torch.Tensor
        self.item_feature_table: torch.Tensor
        self.register_buffer("user_feature_table", user_features.float())  # [U + 1, Fu]
        self.register_buffer("item_feature_table", item_features.float())  # [I + 1, Fi]
        self.item_id = nn.Embedding(shape.n_items + 1, config.item_dim, padding_idx=0)
        # logs without item/user features get id embeddings only
        self.item_proj = nn.Linear(shape.item_features, config.item_dim) \
            if shape.item_features else None
        self.user_id = nn.Embedding(shape.n_users + 1, config.user_dim) \
            if config.use_user_id else None
        self.user_proj = nn.Linear(shape.user_features, config.user_dim) \
            if shape.user_features else None
        self.context_proj = nn.Linear(shape.context_features, config.context_dim)
        self._item_table: InferenceCache[torch.Tensor] = InferenceCache()
        self._item_part: InferenceCache[torch.Tensor] = InferenceCache()
        step_dim = config.item_dim + config.context_dim
        self.encoder = ENCODERS[config.encoder][0](
            input_dim=step_dim, hidden=config.hidden, use_attention=config.use_attention,
            use_time_gate=config.use_time_gate, similarity=config.attention_similarity)
        encoder_dim: int = self.encoder.out_dim  # type: ignore[assignment]  # MoSE: experts
        self.state_dim = encoder_dim + config.user_dim
        # the MoH's own settings (the baselines' depths and mixing are their own)
        moh = {"tower_layers": config.tower_layers,
               "self_weight": config.mixture_self_weight} if config.predictor == "moh" else {}
        self.predictor = PREDICTORS[config.predictor][0](
            user_dim=self.state_dim + config.context_dim, item_dim=config.item_dim,
            n_objectives=shape.n_objectives, hidden=config.hidden,
            tower_hidden=config.tower_hidden,
            objective_embedding_dim=config.objective_embedding_dim,
            similarity=config.attention_similarity, **moh)

    def items(self, items: torch.Tensor) -> torch.Tensor:
        """Item embeddings s_i: [...] -> [..., Di]; index 0 (padding) maps to zeros. Without
        gradients (inference) the whole table is computed once and indexed."""
        if torch.is_grad_enabled():
            return self._embed(items)
        table = self._item_table.get(self._item_sources(), lambda: self._embed(
            torch.arange(self.shape.n_items + 1, device=self.item_id.weight.device)))
        return table[items]

    def _item_sources(self) -> list[torch.Tensor]:
        sources = [self.item_id.weight]
        if self.item_proj is not None:
            sources += [self.item_proj.weight, self.item_proj.bias, self.item_feature_table]
        return sources

    def _embed(self, items: torch.Tensor) -> torch.Tensor:
        emb = self.item_id(items)
        if self.item_proj is not None:
            emb = emb + self.item_proj(self.item_feature_table[items])
        return emb * (items > 0).unsqueeze(-1)

    def user(self, users: torch.Tensor) -> torch.Tensor:
        if self.user_proj is None and self.user_id is None:
            return self.user_feature_table.new_zeros(users.shape[0], self.config.user_dim)
        parts = [self.user_proj(self.user_feature_table[users])] \
            if self.user_proj is not None else []
        if self.user_id is not None:
            parts.append(self.user_id(users))
        return torch.stack(parts).sum(0)

    def state(self, batch: Batch) -> torch.Tensor:
        """User state s_{u,t} = [h_t ; user embedding] [B, S]."""
        steps = torch.cat([self.items(batch.hist_items),
                           self.context_proj(batch.hist_context)], dim=-1)  # [B, L, Di + Dc]
        h = self.encoder(steps, batch.hist_gaps, batch.hist_mask)  # [B, H]
        return torch.cat([h, self.user(batch.user)], dim=-1)

    def predict(self, state: torch.Tensor, context: torch.Tensor, items: torch.Tensor, *,
                fast: bool = False) -> torch.Tensor:
        """state [B, S], context [B, Fc], items [B, C] -> y_hat [B, C, K].

        fast (serving: deepprl.ranking.history, deepprl.serve), without gradients: the
        MoH's fused path (MixtureOfHyperNetwork.forward_projected), its item half (s_i
        W_item, parameters only) one cached table [I + 1, K T1] for the catalogue indexed
        like the item embeddings. Equal to the plain path within 1e-6, not bit for bit, so
        training and evaluation keep the plain one (a bandit trained on logs moved by
        ~1e-3 on inputs rounded differently)."""
        user = torch.cat([state, self.context_proj(context)], dim=-1)
        moh = self.predictor
        if not fast or not isinstance(moh, MixtureOfHyperNetwork) or torch.is_grad_enabled() \
                or torch.jit.is_tracing():
            return self.predictor(user, self.items(items))
        B, C = items.shape
        width = self.shape.n_objectives * moh.layer_shapes[0][1]  # K T1
        table = None
        if (self.shape.n_items + 1) * width <= ITEM_PART_MAX_FLOATS:  # else: per call
            table = self._item_part.get(
                [*self._item_sources(), *moh.projection_sources()],
                lambda: moh.item_projection(self.items(torch.arange(self.shape.n_items + 1))))
        # a few rows at a time: the towers' intermediates of 32 x 2,000 candidates (tens
        # of MB) made a batch 2.5x slower than chunks that stay in the CPU's caches
        step = max(1, PREDICT_CHUNK_CANDIDATES // max(C, 1))
        parts = []
        for lo in range(0, B, step):
            chunk = items[lo : lo + step]
            if table is None:
                emb = self.items(chunk)
                rows = moh.item_projection(emb.reshape(-1, emb.shape[-1]))
            else:  # index_select, not table[items]: a plain copy of rows, ~6x faster
                rows = table.index_select(0, chunk.reshape(-1))
            parts.append(moh.forward_projected(user[lo : lo + step],
                                               rows.view(*chunk.shape, width)))
        return parts[0] if len(parts) == 1 else torch.cat(parts)  # [B, C, K]

    def forward(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        return self.predict(self.state(batch), batch.context, items)
