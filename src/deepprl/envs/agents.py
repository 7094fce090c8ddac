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
from deepprl.ranking import CLOCK_CONTEXT, clock_features, history_gaps, score_batch, slice_batch
from deepprl.recommender import ItemRanker, Recommender


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


@torch.no_grad()
def weighted_scores(recommender: Recommender, pop: Population,
                    alpha: np.ndarray | None = None, *, items: np.ndarray | None = None,
                    chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [N, C], alpha [N, K], y_hat [N, C, K]) of a weighted model for every lane:
    alpha [N, K] given (static weights) or from the recommender's policy; items [N, C]
    the candidates of each lane (default: every item, C = I)."""
    batch = lane_batch(pop, recommender.data, recommender.model.config.history_length)
    fixed = None if alpha is None else torch.from_numpy(alpha.astype(np.float32))
    out = score_batch(recommender.model, recommender.policy, batch,
                      candidate_tensor(pop, items), alpha=fixed, chunk=chunk)
    return out.scores.numpy(), out.alpha.numpy(), out.y_hat.numpy()


@torch.no_grad()
def item_scores(ranker: ItemRanker, pop: Population, *, items: np.ndarray | None = None,
                chunk: int = 512) -> np.ndarray:
    """Scores [N, C] of an item-level baseline for every lane (items as weighted_scores)."""
    ranker.module.eval()
    batch = lane_batch(pop, ranker.data, ranker.history_length)
    candidates = candidate_tensor(pop, items)
    parts = [ranker.module(slice_batch(batch, slice(lo, lo + chunk)),
                           candidates[lo : lo + chunk])
             for lo in range(0, pop.n_lanes, chunk)]
    return torch.cat(parts).numpy()


def candidate_tensor(pop: Population, items: np.ndarray | None) -> torch.Tensor:
    """[N, C] candidate items as a tensor: `items`, or every item for every lane."""
    if items is None:
        return torch.arange(1, pop.truth.n_items + 1).expand(pop.n_lanes, -1)
    return torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64))


class RecommenderAgent:
    """Acts in a RecommenderEnv with a trained model (load_run's ranker): obs -> scores.

    The environment's own Population is read for the history (the observation carries the
    same items and times); a static-weight model may be given weights alpha [K]."""

    def __init__(self, ranker: Recommender | ItemRanker, alpha: np.ndarray | None = None
                 ) -> None:
        self.ranker, self.alpha = ranker, alpha

    def __call__(self, env: object) -> np.ndarray:
        pop = getattr(env, "population", None)
        if not isinstance(pop, Population):
            raise ValueError("the environment has no population: call reset() first")
        if isinstance(self.ranker, ItemRanker):
            return item_scores(self.ranker, pop)[0]
        alpha = None if self.alpha is None else np.broadcast_to(self.alpha, (1, len(self.alpha)))
        return weighted_scores(self.ranker, pop, alpha)[0][0]
