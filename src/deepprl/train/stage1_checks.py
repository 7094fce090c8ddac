"""After stage 1: did an objective's prediction collapse, or did the training loss diverge?

Collapse: the predictor ranks the candidates of an event by sum_k alpha_k y_hat_k, so an
objective whose y_hat_k hardly moves across an event's candidates cannot steer the
ranking, whatever its weight (learned, equal and static weights then rank alike). Its
*prediction spread* is the mean over events of the within-event std of y_hat_k across the
event's candidates, divided by the same for the true objective; below SPREAD_RATIO it is
flagged. Divergence: the largest ratio of an epoch's training loss to the lowest of the
epochs before it; above LOSS_RISE it is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_items, history_index, make_batch
from deepprl.models.network import PredictorModel

SPREAD_RATIO = 0.1
"""An objective is collapsed when its prediction spread is below this share of the truth's."""
LOSS_RISE = 1.5
"""The training loss diverged when an epoch's loss exceeds this factor times an earlier best."""
SHARED_TOWER = 0.5
"""The MoH routes every objective to one tower when each reads it with more than this weight."""


def within_event_spread(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """values [E, C, K], valid [E, C] -> [K]: mean over events with >= 2 valid candidates
    of the std of the values across those candidates (NaN when no event has two)."""
    mask = valid[..., None].astype(np.float64)  # [E, C, 1]
    n = mask.sum(1)  # [E, 1]
    keep = n[:, 0] >= 2
    if not keep.any():
        return np.full(values.shape[-1], np.nan)
    v = np.where(mask > 0, values, 0.0)
    mean = v.sum(1) / np.maximum(n, 1)  # [E, K]
    var = (mask * (v - mean[:, None]) ** 2).sum(1) / np.maximum(n, 1)  # [E, K]
    return np.asarray(np.sqrt(var[keep]).mean(0))


def loss_rise(losses: list[float]) -> float:
    """max over epochs e of loss_e / min(loss_1 .. loss_{e-1}); 1.0 with fewer than 2."""
    rise = 1.0
    for e in range(1, len(losses)):
        best = min(losses[:e])
        if best > 0:
            rise = max(rise, losses[e] / best)
    return rise


def stage1_checks(names: Sequence[str], predicted: np.ndarray, true: np.ndarray,
                  losses: list[float], *, spread_ratio: float = SPREAD_RATIO,
                  loss_factor: float = LOSS_RISE) -> dict[str, Any]:
    """The flags from spreads predicted [K], true [K] (within_event_spread) and the
    per-epoch training losses. An objective whose true spread is 0 or unknown has no ratio
    (None) and is not flagged: nothing to rank by there."""
    ratios: dict[str, float | None] = {}
    for name, p, t in zip(names, predicted, true, strict=True):
        ratios[name] = float(p / t) if np.isfinite(p) and np.isfinite(t) and t > 0 else None
    rise = loss_rise(losses)
    return {"collapsed": [n for n, r in ratios.items() if r is not None and r < spread_ratio],
            "prediction_spread": ratios,
            "true_spread": {n: float(t) if np.isfinite(t) else None
                            for n, t in zip(names, true, strict=True)},
            "loss_rise": rise, "loss_rose": rise > loss_factor,
            "thresholds": {"spread_ratio": spread_ratio, "loss_rise": loss_factor}}


def warnings(checks: dict[str, Any]) -> list[str]:
    """One line per raised flag of stage1_checks, for train.log."""
    lines = [f"stage 1: the prediction of objective {name!r} is near-constant across an "
             f"event's candidates (spread {checks['prediction_spread'][name]:.3g} of the "
             f"truth's, threshold {checks['thresholds']['spread_ratio']:g}): its weight "
             f"cannot change the ranking" for name in checks["collapsed"]]
    if checks["loss_rose"]:
        lines.append(f"stage 1: the training loss rose to {checks['loss_rise']:.3g} times an "
                     f"earlier epoch's (threshold {checks['thresholds']['loss_rise']:g}): "
                     f"training diverged; lower train.lr")
    return lines


@torch.no_grad()
def candidate_spreads(model: PredictorModel, data: Interactions, events: np.ndarray,
                      pool: np.ndarray, *, max_candidates: int, seed: int,
                      max_events: int = 1000, batch_size: int = 64
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) within_event_spread [K] over the candidates of `events` (a seeded
    subsample of max_events), chosen from `pool` as stage 2 and the evaluation choose them."""
    rng = np.random.default_rng([seed, 31])
    if len(events) > max_events:
        events = np.sort(rng.choice(events, size=max_events, replace=False))
    items = candidate_items(data, events, pool, max_candidates=max_candidates, seed=seed)
    true, _ = data.candidate_values(events, items)  # [E, C, K]
    valid = (items > 0) & np.isfinite(true).all(-1)
    model.eval()
    history = history_index(data, model.config.history_length)
    y_hat = np.zeros(true.shape, dtype=np.float64)
    for lo in range(0, len(events), batch_size):
        chunk = events[lo : lo + batch_size]
        batch = make_batch(data, history[chunk], chunk)
        y_hat[lo : lo + batch_size] = model(
            batch, torch.from_numpy(items[lo : lo + batch_size])).numpy()
    return within_event_spread(y_hat, valid), within_event_spread(np.nan_to_num(true), valid)


@torch.no_grad()
def mixture_attention(model: PredictorModel, data: Interactions, events: np.ndarray,
                      *, max_events: int = 5000, batch_size: int = 1024
                      ) -> dict[str, Any] | None:
    """The MoH's mixture attention e_ml on the logged items of `events` (the first
    max_events), averaged: "mean" [K][K], row m = objective m, column l = the tower it
    reads, and "shared_tower", the tower every objective reads with weight > SHARED_TOWER
    (None when there is none). The paper's attention starts uniform and, with three
    objectives, can end with every objective on one tower (docs/model.md, "The mixture
    attention's self prior"). None for a predictor without a mixture attention."""
    predictor = model.predictor
    if not hasattr(predictor, "last_attention") or len(events) == 0:
        return None
    model.eval()
    events = events[:max_events]
    history = history_index(data, model.config.history_length)
    total = None
    for lo in range(0, len(events), batch_size):
        chunk = events[lo : lo + batch_size]
        model(make_batch(data, history[chunk], chunk), torch.from_numpy(data.item[chunk])[:, None])
        attention = cast(torch.Tensor, predictor.last_attention)[:, 0].sum(0)  # [K, K]
        total = attention if total is None else total + attention
    assert total is not None
    mean = (total / len(events)).numpy()
    shared = [int(l) for l in range(mean.shape[1]) if (mean[:, l] > SHARED_TOWER).all()]
    return {"mean": [[round(float(e), 3) for e in row] for row in mean],
            "shared_tower": shared[0] if shared else None}
