"""The offline protocol of paper Table 4, the same for every method.

For each test event: rank the candidate set (the user's test-period items for a logged
dataset, every item where ground truth is fully known), take the top-K, and average the
ground-truth objective values and reward of those items; then average over events.
Events whose candidate set has K items or fewer are counted, reported and excluded: every
policy would pick the same items there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_items
from deepprl.data.splits import Split
from deepprl.eval.metrics import mean_of_top
from deepprl.ranking import top_k


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Test events, their candidates and the candidates' ground truth (NumPy)."""

    events: np.ndarray  # [E]
    items: np.ndarray  # [E, C], 0 = padding
    valid: np.ndarray  # [E, C] bool
    objectives: np.ndarray  # [E, C, K] true values
    reward: np.ndarray  # [E, C] true reward
    excluded: int  # test events with <= k candidates
    total: int  # test events before exclusion and subsampling


def build_eval_set(data: Interactions, split: Split, *, k: int, max_events: int = 0,
                   seed: int = 0) -> EvalSet:
    events = np.flatnonzero(split.test)
    items = candidate_items(data, events, split.test)
    objectives, reward = data.candidate_values(events, items)
    valid = (items > 0) & np.isfinite(reward) & np.isfinite(objectives).all(-1)
    keep = valid.sum(1) > k
    total = len(events)
    events, items, valid = events[keep], items[keep], valid[keep]
    objectives, reward = objectives[keep], reward[keep]
    if max_events and len(events) > max_events:
        pick = np.sort(np.random.default_rng([seed, 31]).choice(len(events), max_events,
                                                                replace=False))
        events, items, valid = events[pick], items[pick], valid[pick]
        objectives, reward = objectives[pick], reward[pick]
    return EvalSet(events=events, items=items, valid=valid, objectives=objectives,
                   reward=reward, excluded=int(total - keep.sum()), total=total)


def score_table(eval_set: EvalSet, scores: np.ndarray, k: int, names: tuple[str, ...]
                ) -> dict[str, Any]:
    """Metrics of ranking by `scores` [E, C]: mean true objectives and reward of the top-k."""
    if len(eval_set.events) == 0:
        raise ValueError("no test event has more than k candidates; lower k or use more data")
    idx = top_k(torch.from_numpy(scores.astype(np.float32)),
                torch.from_numpy(eval_set.valid), k).numpy()
    objectives = mean_of_top(eval_set.objectives, idx).mean(0)
    reward = float(mean_of_top(eval_set.reward, idx).mean())
    return {"objectives": {n: float(v) for n, v in zip(names, objectives, strict=True)},
            "reward": reward}


def popularity_scores(data: Interactions, train: np.ndarray, eval_set: EvalSet) -> np.ndarray:
    """Training-period interaction count of each candidate."""
    counts = np.bincount(data.item[train], minlength=data.n_items + 1).astype(np.float64)
    return counts[eval_set.items]


def oracle_scores(eval_set: EvalSet) -> np.ndarray:
    """Rank by the true reward itself: the most any ranking of these candidates can earn.
    On the simulator this is ranking by each user's true preference over the true
    objectives; on a log, by the user's actual reward (e.g. rating) of each candidate."""
    return eval_set.reward


def describe(eval_set: EvalSet, k: int) -> dict[str, Any]:
    return {"k": k, "test_events": eval_set.total, "evaluated_events": len(eval_set.events),
            "excluded_events_with_at_most_k_candidates": eval_set.excluded,
            "mean_candidates": float(eval_set.valid.sum(1).mean()) if len(eval_set.events)
            else 0.0}
