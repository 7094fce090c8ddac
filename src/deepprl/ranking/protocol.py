"""Ranker: the public surface of every trained model, weighted or item-level.

A weighted model (deepprl.recommender.Recommender: a predictor ranked by
sum_k alpha_k y_hat_k) and an item-level baseline (ItemRanker) both implement it, so
evaluation, the experiments, the worlds and serving ask a model what it can do instead of
branching on its class: a method answers None where the model has nothing to give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch


class Ranker(Protocol):
    """What evaluation, experiments, envs and serving use of a trained model."""

    @property
    def data(self) -> Interactions:
        """The log the model was trained on (its users, items and encoding)."""
        ...

    @property
    def history_length(self) -> int:
        """L: history steps the model reads per event."""
        ...

    @property
    def sweepable(self) -> bool:
        """True when the ranking can be re-run under any static objective weights
        (static_scores, batch_scores with weights): a static-weight sweep."""
        ...

    def scores(self, events: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores [E, C] of candidates items [E, C] at logged events [E], higher first."""
        ...

    def objective_scores(self, events: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """Per-objective scores [E, C, K] (a weighted model's y_hat), or None."""
        ...

    def learned_weights(self, events: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """The objective weights alpha [E, K] the model ranked the events with, or None (an
        item-level policy has none). items as for scores(): one forward pass serves both."""
        ...

    def static_scores(self, events: np.ndarray, items: np.ndarray,
                      weights: Sequence[float] | np.ndarray) -> np.ndarray | None:
        """Scores [E, C] under static objective weights [K] instead of the model's own, or
        None when the model has no weights to set (not sweepable)."""
        ...

    def batch_scores(self, batch: Batch, items: torch.Tensor,
                     weights: np.ndarray | None = None) -> np.ndarray:
        """Scores [B, C] of inputs built by hand (e.g. a world's lanes) batch [B] and
        candidates items [B, C]; weights [B, K], when given, are static objective weights
        per row instead of the model's own (ValueError when not sweepable)."""
        ...

    def recommend(self, user_id: object, *, k: int = 10,
                  candidates: Sequence[object] | None = None, at_time: float | None = None,
                  exclude_seen: bool = False) -> dict[str, object]:
        """Top-k for a user's next interaction: {"user", "weights" (or None), "items"}."""
        ...
