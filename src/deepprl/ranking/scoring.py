"""Score a batch of histories: state -> alpha -> y_hat -> sum_k alpha_k y_hat_k.

The one forward pass of a weighted model (predictor + weight policy) on inputs built by a
caller: the recommender's next event, a served user's live history, the lanes of an
interactive world, the consumers of the A/B simulation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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


class StateCache:
    """User states s_{u,t} of one-event batches, kept by their inputs: a served user asks
    again and again while their history does not change, and the encoder (L recurrent
    steps at batch 1) is then a third of a request. The key is the bytes of the batch's
    user and history fields, so a new feedback step, another clock or another user is
    another key; any change to a parameter (an optimiser step, a loaded state) empties the
    cache. Least recently used entries go beyond `max_entries`. Thread-safe."""

    def __init__(self, *, max_entries: int = 65_536) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self.hits = self.misses = 0
        self._states: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._params: tuple[tuple[int, int], ...] = ()
        self._model: PredictorModel | None = None
        self._sources: list[torch.Tensor] = []
        self._lock = threading.Lock()

    def state(self, model: PredictorModel, batch: Batch) -> torch.Tensor:
        """model.state(batch) [1, S] of a one-event batch (a tensor the caller may modify)."""
        if len(batch) != 1:
            raise ValueError(f"StateCache keeps one-event batches, got {len(batch)} rows")
        if model is not self._model:  # walking the module tree costs more than the check
            self._model, self._sources = model, list(model.parameters())
        params = tuple((t.data_ptr(), t._version) for t in self._sources)
        key = b"".join(t.numpy().tobytes() for t in (
            batch.user, batch.hist_items, batch.hist_gaps, batch.hist_context,
            batch.hist_mask))
        with self._lock:
            if params != self._params:
                self._states.clear()
                self._params = params
            cached = self._states.get(key)
            if cached is not None:
                self._states.move_to_end(key)
                self.hits += 1
                return cached.clone()
        state = model.state(batch)  # outside the lock: inference threads run side by side
        with self._lock:
            self.misses += 1
            if params == self._params:
                self._states[key] = state.clone()
                if len(self._states) > self.max_entries:
                    self._states.popitem(last=False)
        return state


@torch.no_grad()
def score_batch(model: PredictorModel, policy: nn.Module, batch: Batch, items: torch.Tensor,
                *, alpha: torch.Tensor | None = None,
                user_embedding: torch.Tensor | None = None, cold: torch.Tensor | None = None,
                chunk: int | None = None, candidate_chunk: int | None = None,
                state_cache: StateCache | None = None, fast: bool = False) -> Scores:
    """State, weights, predictions and utility of B histories `batch` and their candidates
    items [B, C].

    alpha [B, K], when given, replaces the policy's weights (static or frozen weights).
    user_embedding [Du], when given, replaces the user part of the state of the rows
    `cold` [B] bool (default: every row): a user unknown to the log (cold start).
    chunk: rows per forward pass, candidate_chunk: candidates per prediction (memory, e.g.
    a whole catalogue for one user); None = all at once. The state and alpha of a row do
    not depend on its candidates, so chunks give the same scores up to float rounding.
    state_cache: a StateCache for one-event batches (the same state, computed once).
    fast: PredictorModel.predict's serving path (within 1e-6 of the plain one)."""
    for module in (model, policy):
        if module.training:  # eval() walks every submodule: not on every request
            module.eval()
    n = len(batch)
    parts = [slice(lo, lo + chunk) for lo in range(0, n, chunk)] \
        if chunk is not None and n > chunk else [slice(None)]
    states, alphas, y_hats = [], [], []
    for rows in parts:
        part = batch if rows == slice(None) else slice_batch(batch, rows)
        state = state_cache.state(model, part) if state_cache is not None and len(part) == 1 \
            else model.state(part)  # [b, S]
        if user_embedding is not None:
            du = user_embedding.shape[0]
            swap = slice(None) if cold is None else cold[rows]
            state[swap, state.shape[1] - du:] = user_embedding
        alphas.append(policy(state, part.context) if alpha is None else alpha[rows])  # [b, K]
        y_hats.append(_predict(model, state, part.context, items[rows], candidate_chunk,
                               fast))
        states.append(state)
    a, y_hat = torch.cat(alphas), torch.cat(y_hats)
    return Scores(state=torch.cat(states), alpha=a, y_hat=y_hat, scores=utility(y_hat, a))


def _predict(model: PredictorModel, state: torch.Tensor, context: torch.Tensor,
             items: torch.Tensor, chunk: int | None, fast: bool) -> torch.Tensor:
    """y_hat [b, C, K] of candidates items [b, C], `chunk` candidates at a time."""
    if chunk is None or items.shape[1] <= chunk:
        return model.predict(state, context, items, fast=fast)
    return torch.cat([model.predict(state, context, items[:, lo:lo + chunk], fast=fast)
                      for lo in range(0, items.shape[1], chunk)], dim=1)
