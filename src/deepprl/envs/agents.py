"""Trained models acting in a Population: model inputs built from the lanes' histories.

A lane's history is not a logged event, so its inputs are built here, vectorised over the
lanes, with the same encoding as the training log (deepprl.data.clock, which
deepprl.data.sequences.make_batch and deepprl.data.encode use too).
"""

from __future__ import annotations

import numpy as np
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch
from deepprl.envs.core import Population
from deepprl.ranking import CLOCK_CONTEXT, Ranker, clock_features, history_gaps


def lane_batch(pop: Population, data: Interactions, length: int) -> Batch:
    """Model inputs [N] for every lane's next step: its last `length` history steps and the
    clock now. `data` is the training log (its context must be the clock only)."""
    if data.context_names != CLOCK_CONTEXT:
        raise ValueError(f"{data.name}: lane inputs need a clock-only context "
                         f"{CLOCK_CONTEXT}, got {data.context_names}")
    items, times, prev = pop.recent(length)  # [N, L], [N, L], [N]
    mask = items > 0
    before = np.concatenate([prev[:, None], times[:, :-1]], axis=1)  # [N, L]
    before = np.where(np.concatenate([np.zeros_like(mask[:, :1]), mask[:, :-1]], axis=1),
                      before, np.where(mask, prev[:, None], np.nan))
    hist_context = np.where(mask[..., None], clock_features(times, before), 0.0)
    gaps = np.where(mask, history_gaps(times, before), 0.0)
    last = np.where(mask.any(1), times[:, -1], np.nan)
    return Batch(
        user=torch.from_numpy(pop.users.copy()),
        hist_items=torch.from_numpy(items),
        hist_gaps=torch.from_numpy(gaps.astype(np.float32)),
        hist_context=torch.from_numpy(hist_context.astype(np.float32)),
        hist_mask=torch.from_numpy(mask),
        context=torch.from_numpy(clock_features(pop.now, last)),
    )


def lane_scores(ranker: Ranker, pop: Population, alpha: np.ndarray | None = None, *,
                items: np.ndarray | None = None) -> np.ndarray:
    """Scores [N, C] of a trained model (any Ranker) for every lane: items [N, C] the
    candidates of each lane (default: every item, C = I); alpha [N, K], when given, static
    objective weights per lane instead of the model's own (a static-weight sweep)."""
    batch = lane_batch(pop, ranker.data, ranker.history_length)
    return ranker.batch_scores(batch, candidate_tensor(pop, items), alpha)


def candidate_tensor(pop: Population, items: np.ndarray | None) -> torch.Tensor:
    """[N, C] candidate items as a tensor: `items`, or every item for every lane."""
    if items is None:
        return torch.arange(1, pop.truth.n_items + 1).expand(pop.n_lanes, -1)
    return torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64))


class RecommenderAgent:
    """Acts in a RecommenderEnv with a trained model (load_run's ranker): obs -> scores.

    The environment's own Population is read for the history (the observation carries the
    same items and times); a static-weight model may be given weights alpha [K]."""

    def __init__(self, ranker: Ranker, alpha: np.ndarray | None = None) -> None:
        self.ranker, self.alpha = ranker, alpha

    def __call__(self, env: object) -> np.ndarray:
        pop = getattr(env, "population", None)
        if not isinstance(pop, Population):
            raise ValueError("the environment has no population: call reset() first")
        alpha = None if self.alpha is None else np.broadcast_to(self.alpha, (1, len(self.alpha)))
        return lane_scores(self.ranker, pop, alpha)[0]
