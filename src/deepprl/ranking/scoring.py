"""Score a batch of histories: state -> alpha -> y_hat -> sum_k alpha_k y_hat_k.

The one forward pass of a weighted model (predictor + weight policy) on inputs built by a
caller: the recommender's next event, a served user's live history, the lanes of an
interactive world, the consumers of the A/B simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepprl.data.sequences import Batch
from deepprl.models.network import PredictorModel
from deepprl.ranking.utility import utility


@dataclass(frozen=True)
class Scores:
    """What a weighted model makes of B histories and their candidates (tensors)."""

    state: torch.Tensor  # [B, S] s = [h ; user embedding]
    alpha: torch.Tensor  # [B, K] on the simplex
    y_hat: torch.Tensor  # [B, C, K]
    scores: torch.Tensor  # [B, C] sum_k alpha_k y_hat_k


def slice_batch(batch: Batch, rows: slice | torch.Tensor) -> Batch:
    """The rows `rows` (a slice or an index tensor) of a Batch."""
    return Batch(user=batch.user[rows], hist_items=batch.hist_items[rows],
                 hist_gaps=batch.hist_gaps[rows], hist_context=batch.hist_context[rows],
                 hist_mask=batch.hist_mask[rows], context=batch.context[rows])


@torch.no_grad()
def score_batch(model: PredictorModel, policy: nn.Module, batch: Batch, items: torch.Tensor,
                *, alpha: torch.Tensor | None = None,
                user_embedding: torch.Tensor | None = None, cold: torch.Tensor | None = None,
                chunk: int | None = None, candidate_chunk: int | None = None) -> Scores:
    """State, weights, predictions and utility of B histories `batch` and their candidates
    items [B, C].

    alpha [B, K], when given, replaces the policy's weights (static or frozen weights).
    user_embedding [Du], when given, replaces the user part of the state of the rows
    `cold` [B] bool (default: every row): a user unknown to the log (cold start).
    chunk: rows per forward pass, candidate_chunk: candidates per prediction (memory, e.g.
    a whole catalogue for one user); None = all at once. The state and alpha of a row do
    not depend on its candidates, so chunks give the same scores up to float rounding."""
    for module in (model, policy):
        if module.training:  # eval() walks every submodule: not on every request
            module.eval()
    n = len(batch)
    parts = [slice(lo, lo + chunk) for lo in range(0, n, chunk)] \
        if chunk is not None and n > chunk else [slice(None)]
    states, alphas, y_hats = [], [], []
    for rows in parts:
        part = batch if rows == slice(None) else slice_batch(batch, rows)
        state = model.state(part)  # [b, S]
        if user_embedding is not None:
            du = user_embedding.shape[0]
            swap = slice(None) if cold is None else cold[rows]
            state[swap, state.shape[1] - du:] = user_embedding
        alphas.append(policy(state, part.context) if alpha is None else alpha[rows])  # [b, K]
        y_hats.append(_predict(model, state, part.context, items[rows], candidate_chunk))
        states.append(state)
    a, y_hat = torch.cat(alphas), torch.cat(y_hats)
    return Scores(state=torch.cat(states), alpha=a, y_hat=y_hat, scores=utility(y_hat, a))


def _predict(model: PredictorModel, state: torch.Tensor, context: torch.Tensor,
             items: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """y_hat [b, C, K] of candidates items [b, C], `chunk` candidates at a time."""
    if chunk is None or items.shape[1] <= chunk:
        return model.predict(state, context, items)
    return torch.cat([model.predict(state, context, items[:, lo:lo + chunk])
                      for lo in range(0, items.shape[1], chunk)], dim=1)
