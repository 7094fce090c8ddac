"""Encoder + predictor + weight policy -> top-K by sum_k alpha_k y_hat_k.

NumPy in, NumPy out: the public methods own eval(), no_grad and batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.data.inputs import candidate_list, next_event_arrays
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch, history_index, make_batch
from deepprl.data.splits import Split
from deepprl.inference_data import SeenItems
from deepprl.models.network import PredictorModel
from deepprl.policy.weights import FixedWeights
from deepprl.ranking import score_batch, slice_batch, top_k, utility
from deepprl.ranking.history import score_history
from deepprl.ranking.scoring import StateCache


@dataclass(frozen=True)
class Scored:
    """Model outputs for E events and their candidates (NumPy)."""

    state: np.ndarray  # [E, S]
    context: np.ndarray  # [E, Fc]
    y_hat: np.ndarray  # [E, C, K]


class Recommender:
    """Ranks candidates for users of `data` with a trained model and a weight policy
    (a deepprl.ranking.Ranker).

    `data` is the training log, or for inference only the tail a run stores of it
    (deepprl.inference_data): then `seen` gives the items each user has had and
    `frozen_weights` [U + 1, K] the alpha a user keeps (NaN row: dynamic), which the full
    log would give through fix_weights_at."""

    sweepable = True  # any static alpha can replace the policy's
    _memo: tuple[tuple[np.ndarray, np.ndarray, Scored], ...] = ()  # see scored()

    def __init__(self, model: PredictorModel, policy: nn.Module, data: Interactions, *,
                 seen: SeenItems | None = None, frozen_weights: np.ndarray | None = None
                 ) -> None:
        self.model, self.policy, self.data = model, policy, data
        self.seen, self.frozen_weights = seen, frozen_weights
        self.history = history_index(data, model.config.history_length)
        self.anchor: np.ndarray | None = None  # [U + 1] event whose alpha a user keeps
        self.state_cache = StateCache()  # recommend() and serving: a user asking again

    def fix_weights_at(self, split: Split) -> None:
        """Freeze each user's alpha at their last event outside the test set (the
        w/o-dynamic-updating variant); users without such an event stay dynamic."""
        anchor = np.full(self.data.n_users + 1, -1, dtype=np.int64)
        before = np.flatnonzero(~split.test)
        np.maximum.at(anchor, self.data.user[before], before)
        self.anchor = anchor

    def frozen_weight_table(self) -> np.ndarray:
        """[U + 1, K] the alpha each user keeps after fix_weights_at (NaN rows: users who
        stay dynamic), as a run stores it for inference without the log."""
        anchor = self.anchor if self.anchor is not None else np.zeros(0, np.int64)
        out = np.full((self.data.n_users + 1, self.data.n_objectives), np.nan,
                      dtype=np.float32)
        users = np.flatnonzero(anchor >= 0)
        at = anchor[users]
        out[users] = self.weights(self.states(at), self.data.context[at])
        return out

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

    @property
    def history_length(self) -> int:
        return self.model.config.history_length

    def scored(self, events: np.ndarray, items: np.ndarray) -> Scored:
        """score_events(events, items), kept for the last two sets of events and items
        asked: the Ranker methods below ask it in turn for the same events (one forward
        pass). The predictor is frozen once a Recommender ranks (stage 2 and after)."""
        for seen, candidates, scored in self._memo:
            if np.array_equal(seen, events) and np.array_equal(candidates, items):
                return scored
        scored = self.score_events(events, items)
        # two sets: evaluation's test events and the validation events tuning asks between
        self._memo = ((events.copy(), items.copy(), scored), *self._memo[:1])
        return scored

    def remembered(self) -> dict[str, np.ndarray]:
        """The sets scored() keeps, as arrays ("{i}.events" [E], "{i}.items" [E, C] int32,
        "{i}.state" [E, S], "{i}.y_hat" [P, K] of the P real candidates, items > 0): a run
        stores those of its evaluation (deepprl.artifacts.save_scored), so that evaluating
        it again skips the forward passes of a frozen predictor."""
        out: dict[str, np.ndarray] = {}
        for i, (events, items, scored) in enumerate(self._memo):
            out.update({f"{i}.events": events, f"{i}.items": items.astype(np.int32),
                        f"{i}.state": scored.state, f"{i}.y_hat": scored.y_hat[items > 0]})
        return out

    def remember(self, arrays: dict[str, np.ndarray]) -> None:
        """Keep the sets of remembered() as if scored() had computed them (they must come
        from this recommender's predictor: artifacts checks the run's digests). Padding
        candidates (item 0), which no ranking takes, get y_hat 0."""
        memo = []
        for i in range(len(arrays) // 4):
            events, items = arrays[f"{i}.events"], arrays[f"{i}.items"].astype(np.int64)
            y_hat = np.zeros((*items.shape, self.data.n_objectives), dtype=np.float32)
            y_hat[items > 0] = arrays[f"{i}.y_hat"]
            memo.append((events, items, Scored(state=arrays[f"{i}.state"], y_hat=y_hat,
                                               context=self.data.context[events])))
        self._memo = tuple(memo)

    def scores(self, events: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Utility sum_k alpha_k y_hat_k [E, C] of candidates at logged events."""
        return self.weighted_scores(events, self.scored(events, items))[0]

    def objective_scores(self, events: np.ndarray, items: np.ndarray) -> np.ndarray:
        """y_hat [E, C, K] of candidates at logged events."""
        return self.scored(events, items).y_hat

    def learned_weights(self, events: np.ndarray, items: np.ndarray) -> np.ndarray:
        """alpha [E, K] the recommender ranks logged events with (see event_weights)."""
        return self.event_weights(events, self.scored(events, items))

    def static_scores(self, events: np.ndarray, items: np.ndarray,
                      weights: Sequence[float] | np.ndarray) -> np.ndarray:
        """Utility [E, C] of the predictor under static weights [K] (normalised)."""
        fixed = FixedWeights(torch.from_numpy(np.asarray(weights, dtype=np.float32)))
        return self.weighted_scores(events, self.scored(events, items), fixed)[0]

    def batch_scores(self, batch: Batch, items: torch.Tensor,
                     weights: np.ndarray | None = None) -> np.ndarray:
        """Utility [B, C] of inputs built by hand and candidates items [B, C]; weights
        [B, K] static alpha per row instead of the policy's."""
        fixed = None if weights is None else torch.from_numpy(weights.astype(np.float32))
        return score_batch(self.model, self.policy, batch, items, alpha=fixed,
                           chunk=512).scores.numpy()

    def weighted_scores(self, events: np.ndarray, scored: Scored,
                        policy: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(utility [E, C], alpha [E, K]) of `policy` (default: the recommender's own, see
        event_weights) on predictions already made for logged events."""
        alpha = self.event_weights(events, scored, policy)
        return utility(torch.from_numpy(scored.y_hat), torch.from_numpy(alpha)).numpy(), alpha

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
        user, items = candidate_list(self.data, user_id, k, candidates, exclude_seen,
                                      self.seen)
        batch = next_event_batch(self.data, user, self.model.config.history_length, at_time)
        out = score_history(self, batch, torch.from_numpy(items)[None], k=k,
                            weights=self.user_frozen_weights(user), state_cache=self.state_cache)
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

    The same deepprl.ranking.Ranker as Recommender; there are no learned objective
    weights. `rebuild(weights)`, when given, builds the trained policy anew with other
    static objective weights (MO-LinUCB, MORL: their weights are not learnt)."""

    _values: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def __init__(self, module: nn.Module, data: Interactions, history_length: int, *,
                 rebuild: Callable[[list[float]], nn.Module] | None = None,
                 seen: SeenItems | None = None) -> None:
        self.module, self.data, self.history_length = module, data, history_length
        self.seen = seen  # as in Recommender: set when `data` is a run's stored tail
        self.history = history_index(data, history_length)
        self.rebuild = rebuild
        self._rebuilt: dict[tuple[float, ...], nn.Module] = {}

    @property
    def sweepable(self) -> bool:
        return self.rebuild is not None

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

    def learned_weights(self, events: np.ndarray, items: np.ndarray) -> None:
        """None: an item-level policy learns no objective weights."""
        return None

    def static_scores(self, events: np.ndarray, items: np.ndarray,
                      weights: Sequence[float] | np.ndarray) -> np.ndarray | None:
        """Scores [E, C] under other static weights [K]: the policy's own aggregation of
        its objective scores (computed once per events and items) where it has one, else
        the policy rebuilt with those weights; None when not sweepable."""
        if not self.sweepable:
            return None
        memo = self._values
        if memo is None or not (np.array_equal(memo[0], events)
                                and np.array_equal(memo[1], items)):
            memo = (events.copy(), items.copy(), self.objective_scores(events, items))
            self._values = memo
        if memo[2] is not None:
            return self.aggregated(memo[2], [float(w) for w in weights])
        return ItemRanker(self._reweighted(weights), self.data,
                          self.history_length).scores(events, items)

    def _reweighted(self, weights: Sequence[float] | np.ndarray) -> nn.Module:
        key = tuple(float(w) for w in weights)
        if key not in self._rebuilt:
            if self.rebuild is None:
                raise ValueError("this item-level policy has no static objective weights "
                                 "to set")
            self._rebuilt[key] = self.rebuild(list(key))
        return self._rebuilt[key]

    @torch.no_grad()
    def batch_scores(self, batch: Batch, items: torch.Tensor,
                     weights: np.ndarray | None = None, *, chunk: int = 512) -> np.ndarray:
        """Scores [B, C] of inputs built by hand and candidates items [B, C]; weights
        [B, K]: the rows of each distinct weight vector are scored by the policy rebuilt
        with it."""
        if weights is None:
            return _forward(self.module, batch, items, chunk)
        out = np.empty(tuple(items.shape), dtype=np.float32)
        unique, inverse = np.unique(weights, axis=0, return_inverse=True)
        for j, w in enumerate(unique):
            rows = torch.from_numpy(np.flatnonzero(inverse.reshape(-1) == j))
            out[rows.numpy()] = _forward(self._reweighted(w), slice_batch(batch, rows),
                                         items[rows], chunk)
        return out

    @torch.no_grad()
    def recommend(self, user_id: object, *, k: int = 10,
                  candidates: Sequence[object] | None = None, at_time: float | None = None,
                  exclude_seen: bool = False) -> dict[str, object]:
        user, items = candidate_list(self.data, user_id, k, candidates, exclude_seen,
                                      self.seen)
        batch = next_event_batch(self.data, user, self.history_length, at_time)
        self.module.eval()
        scores = self.module(batch, torch.from_numpy(items)[None])
        idx = top_k(scores, torch.ones_like(scores, dtype=torch.bool), k)[0].numpy()
        return {"user": str(user_id), "weights": None,
                "items": [{"item": self.data.item_ids[int(items[j]) - 1],
                           "score": float(scores[0, j])} for j in idx]}


def next_event_batch(data: Interactions, user: int, length: int,
                     at_time: float | None = None) -> Batch:
    """deepprl.data.inputs.next_event_arrays as a Batch: the inputs of a user's next (not
    yet logged) event."""
    return Batch.of(next_event_arrays(data, user, length, at_time))


def _forward(module: nn.Module, batch: Batch, items: torch.Tensor, chunk: int) -> np.ndarray:
    """module(batch, items) [B, C] of an item-level policy, `chunk` rows at a time."""
    module.eval()
    parts = [module(slice_batch(batch, slice(lo, lo + chunk)), items[lo : lo + chunk])
             for lo in range(0, len(batch), chunk)]
    return _cat(parts, (0, items.shape[1]))


def _cat(parts: list[torch.Tensor], empty_shape: tuple[int, ...]) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=np.float32)
    return torch.cat(parts).numpy()
