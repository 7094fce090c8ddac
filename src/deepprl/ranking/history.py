"""Scoring from an explicit history (serving: logged events + live feedback).

A served user's next event is not a logged event: its inputs are built here from the
logged steps, the live feedback and the clock, with the training log's encoding
(deepprl.data.clock), and scored by deepprl.ranking.scoring.score_batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from deepprl.data.clock import history_gaps
from deepprl.data.inputs import clock_columns as clock_columns  # re-exported
from deepprl.data.inputs import clock_context as clock_context
from deepprl.data.sequences import Batch
from deepprl.models.network import PredictorModel
from deepprl.ranking.scoring import Scores, StateCache, score_batch
from deepprl.ranking.utility import top_k


class Weighted(Protocol):
    """A weighted model: predictor and weight policy (a deepprl.recommender.Recommender)."""

    model: PredictorModel
    policy: nn.Module


@dataclass(frozen=True)
class HistoryScores:
    """Model outputs for one user state built by hand (batch_from_history) (NumPy)."""

    state: np.ndarray  # [S]
    weights: np.ndarray  # [K] alpha on the simplex
    y_hat: np.ndarray  # [C, K]
    scores: np.ndarray  # [C] sum_k alpha_k y_hat_k
    top: np.ndarray  # [min(k, C)] positions into the candidates, best first


def batch_from_history(*, user: int, items: np.ndarray, times: np.ndarray,
                       contexts: np.ndarray, context: np.ndarray, length: int,
                       prev_time: float | None = None) -> Batch:
    """A one-event Batch from an explicit history rather than from logged event indices.

    items [n] item indices (1..I), times [n] (non-decreasing), contexts [n, Fc] the steps'
    own context rows, oldest first; only the last `length` steps are used. `prev_time` is
    the time of the step before items[0] (None: items[0] is the user's first step), for
    the first step's gap. context [Fc] is the context of the event to predict. `user` is
    the user index (0 for a user unknown to the log). Same encoding as make_batch."""
    n = len(items)
    if not (len(times) == n == len(contexts)):
        raise ValueError(f"items, times and contexts must have the same length, got "
                         f"{n}, {len(times)} and {len(contexts)}")
    if n > length:
        prev_time, items, times, contexts = (float(times[n - length - 1]), items[-length:],
                                             times[-length:], contexts[-length:])
        n = length
    times = np.asarray(times, dtype=np.float64)
    before = np.r_[np.nan if prev_time is None else prev_time, times[:-1]][:n]  # [n]
    pad = length - n
    hist_items = np.zeros((1, length), dtype=np.int64)
    hist_items[0, pad:] = items
    hist_gaps = np.zeros((1, length), dtype=np.float32)
    hist_gaps[0, pad:] = history_gaps(times, before)
    hist_context = np.zeros((1, length, context.shape[-1]), dtype=np.float32)
    hist_context[0, pad:] = contexts
    mask = np.zeros((1, length), dtype=bool)
    mask[0, pad:] = True
    return Batch(user=torch.tensor([user], dtype=torch.int64),
                 hist_items=torch.from_numpy(hist_items), hist_gaps=torch.from_numpy(hist_gaps),
                 hist_context=torch.from_numpy(hist_context), hist_mask=torch.from_numpy(mask),
                 context=torch.from_numpy(np.asarray(context, dtype=np.float32)[None]))


@torch.no_grad()
def mean_user_embedding(model: PredictorModel) -> torch.Tensor:
    """[Du] the mean user embedding of the users the model was trained on (indices 1..U):
    a cold-start stand-in, because index 0 is never trained (its id embedding, if the
    model has one, keeps its random initial value)."""
    model.eval()
    users = torch.arange(1, model.shape.n_users + 1)
    return model.user(users).mean(0)


@torch.no_grad()
def score_history(recommender: Weighted, batch: Batch, items: torch.Tensor, *, k: int,
                  user_embedding: torch.Tensor | None = None,
                  weights: torch.Tensor | None = None,
                  state_cache: StateCache | None = None
                  ) -> HistoryScores:
    """Weights, predictions and top-k for a one-event batch and candidates items [1, C].

    `user_embedding` [Du], when given, replaces the user part of the state
    s = [h ; user embedding] (e.g. mean_user_embedding for a user unknown to the log).
    `weights` [1, K], when given, are used instead of the policy's (frozen weights).
    `state_cache`: a StateCache that keeps the user state of histories seen before.
    Scored by the serving path of the predictor (score_batch's `fast`)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    out = score_batch(recommender.model, recommender.policy, batch, items, alpha=weights,
                      user_embedding=user_embedding, state_cache=state_cache, fast=True)
    return row_scores(out, 0, k)


def row_scores(out: Scores, row: int, k: int) -> HistoryScores:
    """HistoryScores of one row of a scored batch, with its top min(k, C) candidates."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    scores = out.scores[row : row + 1]  # [1, C]
    top = top_k(scores, torch.ones_like(scores, dtype=torch.bool), min(k, scores.shape[1]))
    return HistoryScores(state=out.state[row].numpy(), weights=out.alpha[row].numpy(),
                         y_hat=out.y_hat[row].numpy(), scores=scores[0].numpy(),
                         top=top[0].numpy())
