"""Encoder + predictor + weight policy -> top-K by sum_k alpha_k y_hat_k.

NumPy in, NumPy out: the public methods own eval(), no_grad and batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.data.clock import CLOCK_CONTEXT, time_context
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch, history_index, make_batch
from deepprl.data.splits import Split
from deepprl.eval.metrics import top_k, utility
from deepprl.inference_data import SeenItems, items_seen
from deepprl.models.network import PredictorModel


@dataclass(frozen=True)
class Scored:
    """Model outputs for E events and their candidates (NumPy)."""

    state: np.ndarray  # [E, S]
    context: np.ndarray  # [E, Fc]
    y_hat: np.ndarray  # [E, C, K]


class Recommender:
    """Ranks candidates for users of `data` with a trained model and a weight policy.

    `data` is the training log, or for inference only the tail a run stores of it
    (deepprl.inference_data): then `seen` gives the items each user has had and
    `frozen_weights` [U + 1, K] the alpha a user keeps (NaN row: dynamic), which the full
    log would give through fix_weights_at."""

    def __init__(self, model: PredictorModel, policy: nn.Module, data: Interactions, *,
                 seen: SeenItems | None = None, frozen_weights: np.ndarray | None = None
                 ) -> None:
        self.model, self.policy, self.data = model, policy, data
        self.seen, self.frozen_weights = seen, frozen_weights
        self.history = history_index(data, model.config.history_length)
        self.anchor: np.ndarray | None = None  # [U + 1] event whose alpha a user keeps

    def fix_weights_at(self, split: Split) -> None:
        """Freeze each user's alpha at their last event outside the test set (the
        w/o-dynamic-updating variant); users without such an event stay dynamic."""
        anchor = np.full(self.data.n_users + 1, -1, dtype=np.int64)
        before = np.flatnonzero(~split.test)
        np.maximum.at(anchor, self.data.user[before], before)
        self.anchor = anchor

    def event_weights(self, events: np.ndarray, scored: Scored,
                      policy: nn.Module | None = None) -> np.ndarray:
        """alpha [E, K] at logged events: `policy` (e.g. fixed weights) or the
        recommender's own, frozen at each user's anchor event when fix_weights_at was set."""
        state, context = scored.state, scored.context
        if policy is None and self.anchor is not None:
            anchor = self.anchor[self.data.user[events]]
            has = anchor >= 0
            if has.any():
                state, context = state.copy(), context.copy()
                state[has] = self.states(anchor[has])
                context[has] = self.data.context[anchor[has]]
        return self.weights(state, context, policy)

    @torch.no_grad()
    def score_events(self, events: np.ndarray, items: np.ndarray, *, batch_size: int = 512,
                     states: np.ndarray | None = None) -> Scored:
        """States and predictions for logged events [E] and candidates [E, C]; `states`
        [E, S], when the caller has them already (from `states()`), are not recomputed."""
        self.model.eval()
        parts, y_hats = [], []
        for lo in range(0, len(events), batch_size):
            chunk = events[lo : lo + batch_size]
            if states is None:
                state = self.model.state(make_batch(self.data, self.history[chunk], chunk))
            else:
                state = torch.from_numpy(states[lo : lo + batch_size])
            parts.append(state)
            y_hats.append(self.model.predict(state, torch.from_numpy(self.data.context[chunk]),
                                             torch.from_numpy(items[lo : lo + batch_size])))
        return Scored(state=_cat(parts, (0, self.model.state_dim)),
                      context=self.data.context[events],
                      y_hat=_cat(y_hats, (0, items.shape[1], self.data.n_objectives)))

    @torch.no_grad()
    def states(self, events: np.ndarray, *, batch_size: int = 2048) -> np.ndarray:
        """User states s_{u,t} [E, S] at logged events [E]."""
        self.model.eval()
        parts = []
        for lo in range(0, len(events), batch_size):
            chunk = events[lo : lo + batch_size]
            parts.append(self.model.state(make_batch(self.data, self.history[chunk], chunk)))
        return _cat(parts, (0, self.model.state_dim))

    def scores(self, events: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Utility sum_k alpha_k y_hat_k [E, C] of candidates at logged events."""
        return self.weighted_scores(events, self.score_events(events, items))[0]

    def weighted_scores(self, events: np.ndarray, scored: Scored,
                        policy: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(utility [E, C], alpha [E, K]) of `policy` (default: the recommender's own, see
        event_weights) on predictions already made for logged events."""
        alpha = self.event_weights(events, scored, policy)
        return np.einsum("eck,ek->ec", scored.y_hat, alpha), alpha

    @torch.no_grad()
    def weights(self, state: np.ndarray, context: np.ndarray,
                policy: nn.Module | None = None) -> np.ndarray:
        """alpha [E, K] of `policy` (default: the recommender's own) at states [E, S]."""
        policy = policy if policy is not None else self.policy
        policy.eval()
        return policy(torch.from_numpy(state), torch.from_numpy(context)).numpy()

    @torch.no_grad()
    def recommend(self, user_id: object, *, k: int = 10,
                  candidates: Sequence[object] | None = None,
                  at_time: float | None = None, exclude_seen: bool = False) -> dict[str, object]:
        """Top-k for a user's next interaction, with alpha and every y_hat (explainability).

        The state is built from the user's latest L events; the context from `at_time`
        (default: the time of the user's last event)."""
        user, items = _candidate_list(self.data, user_id, k, candidates, exclude_seen,
                                      self.seen)
        batch = next_event_batch(self.data, user, self.model.config.history_length, at_time)
        out = score_history(self, batch, torch.from_numpy(items)[None], k=k,
                            weights=self.user_frozen_weights(user))
        names = self.data.objective_names
        return {
            "user": str(user_id),
            "weights": dict(zip(names, out.weights.tolist(), strict=True)),
            "items": [
                {"item": self.data.item_ids[int(items[j]) - 1], "score": float(out.scores[j]),
                 "predicted": dict(zip(names, out.y_hat[j].tolist(), strict=True))}
                for j in out.top
            ],
        }


    def user_frozen_weights(self, user: int) -> torch.Tensor | None:
        """[1, K] the alpha user index `user` keeps (w/o-dynamic variant), None if dynamic."""
        if self.frozen_weights is not None:
            row = self.frozen_weights[user]
            return torch.from_numpy(row[None].copy()) if np.isfinite(row).all() else None
        if self.anchor is not None and self.anchor[user] >= 0:
            at = self.anchor[user : user + 1]
            return torch.from_numpy(self.weights(self.states(at), self.data.context[at]))
        return None


class ItemRanker:
    """Ranks with an item-level policy (deepprl.baselines): module(batch, items) -> scores.

    Same public surface as Recommender for evaluation and recommend(); there are no
    objective weights or per-objective predictions to report."""

    def __init__(self, module: nn.Module, data: Interactions, history_length: int, *,
                 seen: SeenItems | None = None) -> None:
        self.module, self.data, self.history_length = module, data, history_length
        self.seen = seen  # as in Recommender: set when `data` is a run's stored tail
        self.history = history_index(data, history_length)

    @torch.no_grad()
    def scores(self, events: np.ndarray, items: np.ndarray, *, batch_size: int = 512
               ) -> np.ndarray:
        """Scores [E, C] of candidates [E, C] at logged events [E]."""
        self.module.eval()
        parts = []
        for lo in range(0, len(events), batch_size):
            chunk = events[lo : lo + batch_size]
            batch = make_batch(self.data, self.history[chunk], chunk)
            parts.append(self.module(batch, torch.from_numpy(items[lo : lo + batch_size])))
        return _cat(parts, (0, items.shape[1]))

    @torch.no_grad()
    def objective_scores(self, events: np.ndarray, items: np.ndarray, *,
                         batch_size: int = 512) -> np.ndarray | None:
        """Per-objective scores [E, C, K] where the policy aggregates them with static
        weights (module.objective_scores / aggregate_with, e.g. MO-LinUCB); else None."""
        if not hasattr(self.module, "aggregate_with"):
            return None
        self.module.eval()
        parts = []
        for lo in range(0, len(events), batch_size):
            chunk = events[lo : lo + batch_size]
            batch = make_batch(self.data, self.history[chunk], chunk)
            parts.append(self.module.objective_scores(  # type: ignore[operator]
                batch, torch.from_numpy(items[lo : lo + batch_size])))
        return _cat(parts, (0, items.shape[1], self.data.n_objectives))

    def aggregated(self, values: np.ndarray, weights: Sequence[float]) -> np.ndarray:
        """Scores [E, C] of objective_scores' values under other static weights."""
        out = self.module.aggregate_with(  # type: ignore[operator]
            torch.from_numpy(values), [float(w) for w in weights])
        return np.asarray(out.numpy())

    @torch.no_grad()
    def recommend(self, user_id: object, *, k: int = 10,
                  candidates: Sequence[object] | None = None, at_time: float | None = None,
                  exclude_seen: bool = False) -> dict[str, object]:
        user, items = _candidate_list(self.data, user_id, k, candidates, exclude_seen,
                                      self.seen)
        batch = next_event_batch(self.data, user, self.history_length, at_time)
        self.module.eval()
        scores = self.module(batch, torch.from_numpy(items)[None])
        idx = top_k(scores, torch.ones_like(scores, dtype=torch.bool), k)[0].numpy()
        return {"user": str(user_id), "weights": None,
                "items": [{"item": self.data.item_ids[int(items[j]) - 1],
                           "score": float(scores[0, j])} for j in idx]}


def _candidate_list(data: Interactions, user_id: object, k: int,
                    candidates: Sequence[object] | None, exclude_seen: bool,
                    seen: SeenItems | None = None) -> tuple[int, np.ndarray]:
    """Validated (user index, candidate item indices) of a recommend() call."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    user = data.user_index(user_id)
    if candidates is None:
        items = np.arange(1, data.n_items + 1)
        if exclude_seen:
            items = np.setdiff1d(items, items_seen(data, seen, user))
            if len(items) == 0:
                raise ValueError(f"user {user_id!r} has seen every item: nothing left to "
                                 f"recommend with exclude_seen")
        return user, items
    if not candidates:
        raise ValueError("candidates must not be empty")
    items = data.item_indices(candidates)
    ordered = np.sort(items)
    if (ordered[1:] == ordered[:-1]).any():
        raise ValueError("candidates name the same item more than once")
    return user, items


def next_event_batch(data: Interactions, user: int, length: int,
                     at_time: float | None = None) -> Batch:
    """Inputs for a user's next (not yet logged) event: the last `length` events as history,
    the context recomputed at `at_time` (clock features and the gap since the last event);
    other context columns carry over from the last event."""
    span = data.user_events(user)
    last = int(span[-1])
    hist = np.full(length, -1, dtype=np.int64)
    recent = span[-length:]
    hist[length - len(recent) :] = recent
    batch = make_batch(data, hist[None], np.array([last]))
    when = data.time[last] if at_time is None else float(at_time)
    if not np.isfinite(when):
        raise ValueError(f"at_time must be a finite number, got {at_time!r}")
    if when < data.time[last]:
        raise ValueError(f"at_time {when} is before the user's last event ({data.time[last]})")
    clock = clock_context(data, np.array([when]), prev_time=float(data.time[last]))
    context = data.context[last].copy()
    context[: clock.shape[1]] = clock[0]
    return Batch(user=batch.user, hist_items=batch.hist_items, hist_gaps=batch.hist_gaps,
                 hist_context=batch.hist_context, hist_mask=batch.hist_mask,
                 context=torch.from_numpy(context[None]))


def _cat(parts: list[torch.Tensor], empty_shape: tuple[int, ...]) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=np.float32)
    return torch.cat(parts).numpy()


# -- scoring from an explicit history (serving: logged events + live feedback) -------------


@dataclass(frozen=True)
class HistoryScores:
    """Model outputs for one user state built by hand (batch_from_history) (NumPy)."""

    state: np.ndarray  # [S]
    weights: np.ndarray  # [K] alpha on the simplex
    y_hat: np.ndarray  # [C, K]
    scores: np.ndarray  # [C] sum_k alpha_k y_hat_k
    top: np.ndarray  # [min(k, C)] positions into the candidates, best first


def clock_columns(data: Interactions) -> int:
    """How many leading context columns come from the clock: 5 (hour, weekday, gap) for a
    log with timestamps, 1 (log_gap_events) for a log whose time is an event counter."""
    return len(CLOCK_CONTEXT) if data.context_names[: len(CLOCK_CONTEXT)] == CLOCK_CONTEXT \
        else 1


def clock_context(data: Interactions, times: np.ndarray, prev_time: float | None
                  ) -> np.ndarray:
    """Clock context [n, clock_columns(data)] of n steps of ONE user at `times` [n]
    (non-decreasing; a step earlier than its predecessor gets gap 0), the gap of the first
    measured from `prev_time` (None: the user's first step, gap 0). The same encoding as the
    training log (time_context)."""
    width = clock_columns(data)
    if len(times) == 0:
        return np.zeros((0, width), dtype=np.float32)
    has_clock = width == len(CLOCK_CONTEXT)
    lead = np.array([] if prev_time is None else [prev_time], dtype=np.float64)
    full = np.r_[lead, np.asarray(times, dtype=np.float64)]
    with np.errstate(invalid="ignore", divide="ignore"):  # negative gaps are zeroed below
        clock, _ = time_context(np.zeros(len(full), dtype=np.int64), full, has_clock=has_clock)
    backwards = np.r_[False, np.diff(full) < 0]
    clock[backwards, -1] = 0.0  # the gap is the last clock column (log1p(0) = 0)
    return clock[len(lead):]


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
    before = np.r_[times[0] if prev_time is None else prev_time, times[:-1]] if n else times
    gap_hours = np.maximum(times - before, 0.0) / 3600.0  # [n]
    pad = length - n
    hist_items = np.zeros((1, length), dtype=np.int64)
    hist_items[0, pad:] = items
    hist_gaps = np.zeros((1, length), dtype=np.float32)
    hist_gaps[0, pad:] = np.log1p(gap_hours)
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
def score_history(recommender: Recommender, batch: Batch, items: torch.Tensor, *, k: int,
                  user_embedding: torch.Tensor | None = None,
                  weights: torch.Tensor | None = None) -> HistoryScores:
    """Weights, predictions and top-k for a one-event batch and candidates items [1, C].

    `user_embedding` [Du], when given, replaces the user part of the state
    s = [h ; user embedding] (e.g. mean_user_embedding for a user unknown to the log).
    `weights` [1, K], when given, are used instead of the policy's (frozen weights)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    model, policy = recommender.model, recommender.policy
    for module in (model, policy):
        if module.training:  # eval() walks every submodule: not on every request
            module.eval()
    state = model.state(batch)  # [1, S]
    if user_embedding is not None:
        state = torch.cat([state[:, : state.shape[1] - user_embedding.shape[0]],
                           user_embedding[None]], dim=1)
    alpha = policy(state, batch.context) if weights is None else weights  # [1, K]
    y_hat = model.predict(state, batch.context, items)  # [1, C, K]
    scores = utility(y_hat, alpha)  # [1, C]
    top = top_k(scores, torch.ones_like(scores, dtype=torch.bool), min(k, items.shape[1]))
    return HistoryScores(state=state[0].numpy(), weights=alpha[0].numpy(),
                         y_hat=y_hat[0].numpy(), scores=scores[0].numpy(), top=top[0].numpy())
