"""The serving logic without HTTP: user histories, cold start, scoring, feedback.

State of a user = their last L steps: the training-log events of the user followed by the
feedback stored for that user id (ordered by timestamp, then arrival), newest last.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepprl.artifacts import (
    SCHEMA_FILE,
    RunError,
    load_weighted_run,
    read_json,
)
from deepprl.config import RunConfig
from deepprl.data.sequences import Batch
from deepprl.export.manifest import model_version as exported_model_version
from deepprl.inference_data import events_logged, items_seen
from deepprl.ranking.history import (
    HistoryScores,
    batch_from_history,
    clock_columns,
    clock_context,
    mean_user_embedding,
    row_scores,
    score_history,
)
from deepprl.ranking.scoring import Scores
from deepprl.recommender import Recommender
from deepprl.serve.schemas import FeedbackRequest, RecommendRequest
from deepprl.serve.settings import IDEMPOTENCY_HEADER, ServeSettings
from deepprl.serve.store import FeedbackEvent, FeedbackStore, KeyReuseError, Retention, Stored

DB_FILE = "serve.sqlite3"
Scorer = Callable[[Batch, torch.Tensor], Scores]
"""(batch, candidates [B, C]) -> Scores: the ONNX graphs (deepprl.serve.onnx_scorer) in
place of the PyTorch modules; users of index 0 get the cold-start embedding."""


class FieldError(ValueError):
    """A request that parsed but names something wrong: answered 4xx naming `field`."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class History:
    """The tail of a user's steps (at most L + 1, oldest first) and where they came from."""

    user: int  # user index, 0 for a user unknown to the log
    items: np.ndarray  # [n] item indices
    times: np.ndarray  # [n] float64
    contexts: np.ndarray  # [n, Fc] float32
    sources: tuple[str, ...]  # "log" | "feedback" per step
    base_context: np.ndarray  # [Fc - clock] non-clock context of the user's last logged event
    logged_events: int

    @property
    def last_time(self) -> float | None:
        return float(self.times[-1]) if len(self.times) else None


@dataclass(frozen=True)
class Prepared:
    """A /recommend request's inputs, validated: what scoring it needs."""

    history: History
    at_time: float
    context: np.ndarray  # [Fc] of the event to predict
    items: torch.Tensor  # [1, C] candidate item indices


def model_version(run: Path) -> str:
    """deepprl version + the first 12 hex digits of the SHA-256 of the weight files (the
    version an ONNX export records: deepprl.export.manifest.model_version)."""
    return exported_model_version(run)


class Service:
    """A loaded run plus its feedback store; thread-safe (inference holds no state)."""

    def __init__(self, config: RunConfig, recommender: Recommender, *, store: FeedbackStore,
                 settings: ServeSettings, version: str, scorer: Scorer | None = None
                 ) -> None:
        self.config, self.recommender, self.store = config, recommender, store
        self.scorer = scorer  # None: the recommender's PyTorch modules score
        self.settings, self.version = settings, version
        self.data = recommender.data
        self.length = recommender.model.config.history_length
        self.n_clock = clock_columns(self.data)
        self.has_clock = self.n_clock > 1
        self.names = self.data.objective_names
        self.context_columns = {name: i for i, name in enumerate(self.data.context_names)
                                if i >= self.n_clock}
        self.catalogue = torch.arange(1, self.data.n_items + 1)[None]  # [1, I]
        self.item_lookup = {raw: i + 1 for i, raw in enumerate(self.data.item_ids)}
        self.cold_user = mean_user_embedding(recommender.model)  # [Du]
        self.started = time.time()

    @classmethod
    def load(cls, run: str | Path, *, db: str | Path | None = None,
             settings: ServeSettings | None = None, onnx: bool = False,
             onnx_dir: str | Path | None = None) -> Service:
        """Load the run once from its directory alone, not the training log (RunError if it
        is corrupt), and open (or create) the store: `db`, default RUN/serve.sqlite3
        (StoreError if it is not writable). With `onnx`, requests are scored by the run's
        ONNX export (`onnx_dir`, default RUN/onnx; deepprl.serve.onnx_scorer)."""
        run = Path(run)
        config, recommender = load_weighted_run(run, serving=True)
        scorer = None
        if onnx or onnx_dir is not None:
            from deepprl.serve.onnx_scorer import OnnxScorer

            scorer = OnnxScorer.load(run, None if onnx_dir is None else Path(onnx_dir))
        try:
            version = model_version(run)
        except OSError as err:
            raise RunError(f"{run}: cannot read the weights: {err}") from err
        # the fingerprint of the full training log, recorded at training time
        store = FeedbackStore(Path(db) if db is not None else run / DB_FILE,
                              fingerprint=str(read_json(run / SCHEMA_FILE)["data_fingerprint"]))
        return cls(config, recommender, store=store, settings=settings or ServeSettings(),
                   version=version, scorer=scorer)

    # -- ids ---------------------------------------------------------------------------
    def user_index(self, user_id: str) -> int:
        """Index of a user of the log, 0 for an unknown user (cold start)."""
        try:
            return self.data.user_index(user_id)
        except ValueError:
            return 0

    def item_index(self, item_id: str, field: str) -> int:
        index = self.item_lookup.get(item_id)
        if index is None:
            raise FieldError(field, f"unknown item id {item_id!r}: not in the catalogue of "
                                    f"{self.data.n_items} items")
        return index

    # -- history -----------------------------------------------------------------------
    def history(self, user_id: str) -> History:
        """The last L + 1 steps of the user (the extra one gives the first step's gap)."""
        user, data, n = self.user_index(user_id), self.data, self.length + 1
        logged = data.user_events(user) if user else np.zeros(0, dtype=np.int64)
        base = data.context[logged[-1], self.n_clock:] if len(logged) else \
            np.zeros(data.context.shape[1] - self.n_clock, dtype=np.float32)
        tail = logged[-n:]
        feedback = self.store.recent(user_id, n)
        last_logged = float(data.time[tail[-1]]) if len(tail) else None
        if self.has_clock:
            fb_times = np.array([e.timestamp for e in feedback], dtype=np.float64)
        else:  # the log's time is an event counter: each feedback step is one event later
            start = last_logged if last_logged is not None else -1.0
            fb_times = start + np.arange(1, len(feedback) + 1, dtype=np.float64)
        fb_context = np.empty((len(feedback), data.context.shape[1]), dtype=np.float32)
        if feedback:  # (the clock features of no step still cost a request ~0.1 ms)
            fb_context[:, : self.n_clock] = clock_context(data, fb_times, last_logged)
            fb_context[:, self.n_clock:] = base
        fb_items = np.array([self.item_lookup[e.item_id] for e in feedback],
                            dtype=np.int64)
        items = np.concatenate([data.item[tail], fb_items])[-n:]
        times = np.concatenate([data.time[tail], fb_times])[-n:]
        contexts = np.concatenate([data.context[tail], fb_context])[-n:]
        sources = (("log",) * len(tail) + ("feedback",) * len(feedback))[-n:]
        return History(user=user, items=items, times=times, contexts=contexts,
                       sources=sources, base_context=base,
                       logged_events=events_logged(data, self.recommender.seen, user))

    def request_time(self, history: History, timestamp: float | None) -> float:
        """When the next event happens: `timestamp`, default now (never before the user's
        latest step). For a log without a clock: one event after the latest step."""
        last = history.last_time
        if not self.has_clock:
            return last + 1.0 if last is not None else 0.0
        if timestamp is None:
            now = time.time()
            return max(now, last) if last is not None else now
        if last is not None and timestamp < last:
            raise FieldError("timestamp", f"{timestamp} is before the user's latest event "
                                          f"({last}); omit it to use the server's clock")
        return timestamp

    def request_context(self, history: History, at_time: float,
                        values: dict[str, float] | None) -> np.ndarray:
        """[Fc] clock columns at `at_time`; other columns from `values` by name, else the
        user's last logged event, else 0."""
        context = np.empty(self.data.context.shape[1], dtype=np.float32)
        context[: self.n_clock] = clock_context(self.data, np.array([at_time]),
                                                history.last_time)[0]
        context[self.n_clock:] = history.base_context
        for name, value in (values or {}).items():
            column = self.context_columns.get(name)
            if column is None:
                clock = name in self.data.context_names
                why = ("is computed from the timestamp" if clock else
                       f"is not a context column of this model; expected one of "
                       f"{sorted(self.context_columns)}")
                raise FieldError(f"context.{name}", why)
            context[column] = value
        return context

    def score(self, history: History, at_time: float, context: np.ndarray,
              items: torch.Tensor, k: int) -> HistoryScores:
        batch = batch_from_history(user=history.user, items=history.items,
                                   times=history.times, contexts=history.contexts,
                                   context=context, length=self.length)
        if self.scorer is not None:  # the ONNX graphs: a cold user's embedding is in-graph
            return row_scores(self.scorer(batch, items), 0, k)
        # an index-0 user embedding was never trained: use the training users' mean
        cold = self.cold_user if history.user == 0 else None
        return score_history(self.recommender, batch, items, k=k, user_embedding=cold,
                             state_cache=self.recommender.state_cache)

    # -- endpoints -----------------------------------------------------------------------
    def recommend(self, req: RecommendRequest) -> dict[str, object]:
        prepared = self.prepare(req)
        scored = self.score(prepared.history, prepared.at_time, prepared.context,
                            prepared.items, req.k)
        return self.answer(req, prepared, scored)

    def prepare(self, req: RecommendRequest) -> Prepared:
        """A request's inputs (FieldError naming what is wrong): what scoring needs."""
        s = self.settings
        if req.k > s.max_k:
            raise FieldError("k", f"{req.k} is above the limit of {s.max_k}")
        items = self._candidates(req.candidates) if req.candidates is not None \
            else self.catalogue
        history = self.history(req.user_id)
        if req.exclude_seen:
            items = self._unseen(req.user_id, history.user, items)
        at_time = self.request_time(history, req.timestamp)
        context = self.request_context(history, at_time, req.context)
        return Prepared(history=history, at_time=at_time, context=context, items=items)

    def answer(self, req: RecommendRequest, prepared: Prepared, scored: HistoryScores
               ) -> dict[str, object]:
        """The /recommend response of a prepared request and its scores."""
        ids, names, history = self.data.item_ids, self.names, prepared.history
        chosen = prepared.items[0, torch.from_numpy(scored.top)].tolist()
        return {
            "user_id": req.user_id, "known_user": history.user != 0,
            "model_version": self.version, "timestamp": prepared.at_time,
            "history_length": min(len(history.items), self.length),
            "weights": dict(zip(names, scored.weights.tolist(), strict=True)),
            "items": [{"item_id": ids[item - 1], "score": float(scored.scores[j]),
                       "predicted": dict(zip(names, scored.y_hat[j].tolist(), strict=True))}
                      for item, j in zip(chosen, scored.top.tolist(), strict=True)],
        }

    def _candidates(self, candidates: list[str]) -> torch.Tensor:
        if len(candidates) > self.settings.max_candidates:
            raise FieldError("candidates", f"{len(candidates)} items, above the limit of "
                                           f"{self.settings.max_candidates}")
        indices = np.fromiter(map(self.item_lookup.get, candidates, itertools.repeat(0)),
                              dtype=np.int64, count=len(candidates))
        if not indices.all():
            i = int(np.flatnonzero(indices == 0)[0])
            self.item_index(candidates[i], f"candidates[{i}]")  # raises, naming the item
        ordered = np.sort(indices)
        if (ordered[1:] == ordered[:-1]).any():
            first: dict[int, int] = {}
            for i, index in enumerate(indices.tolist()):
                if index in first:
                    raise FieldError(f"candidates[{i}]", f"item id {candidates[i]!r} repeats "
                                                         f"candidates[{first[index]}]")
                first[index] = i
        return torch.from_numpy(indices)[None]

    def _unseen(self, user_id: str, user: int, items: torch.Tensor) -> torch.Tensor:
        seen = set(items_seen(self.data, self.recommender.seen, user).tolist()) if user \
            else set()
        seen |= {self.item_lookup[i] for i in self.store.items(user_id)}
        keep = [i for i in items[0].tolist() if i not in seen]
        if not keep:
            raise FieldError("exclude_seen", "the user has had every candidate: nothing is "
                                             "left to recommend")
        return torch.tensor(keep, dtype=torch.int64)[None]

    def feedback(self, req: FeedbackRequest, *, idempotency_key: str | None = None
                 ) -> tuple[dict[str, object], bool]:
        """Store the event -> (acknowledgement, replayed). With a key already stored for
        the same request, nothing is stored and the original acknowledgement comes back."""
        key = None
        if idempotency_key is not None:
            # the request as sent (timestamp None stays None): a retry matches its original
            digest = hashlib.sha256(json.dumps(req.model_dump(), sort_keys=True).encode())
            key = (idempotency_key, digest.hexdigest())
            stored = self._replay(*key)
            if stored is not None:
                return self._ack(req, stored), True
        event = self._event(req)
        s = self.settings
        retention = Retention(max_events_per_user=s.retention_max_events_per_user,
                              max_age_s=s.retention_max_age_s)
        try:
            stored = self.store.add(event, model_version=self.version, key=key,
                                    retention=retention)
        except KeyReuseError as err:  # the same key, raced in by a different request
            raise FieldError(IDEMPOTENCY_HEADER, str(err)) from err
        return self._ack(req, stored), stored.replayed

    def _replay(self, key: str, digest: str) -> Stored | None:
        try:
            return self.store.replay(key, digest)
        except KeyReuseError as err:
            raise FieldError(IDEMPOTENCY_HEADER, str(err)) from err

    def _ack(self, req: FeedbackRequest, stored: Stored) -> dict[str, object]:
        return {"id": stored.id, "user_id": req.user_id, "item_id": req.item_id,
                "timestamp": stored.timestamp, "feedback_events": stored.feedback_events,
                "model_version": self.version}

    def _event(self, req: FeedbackRequest) -> FeedbackEvent:
        """The event to store, or FieldError naming what is wrong with the request."""
        self.item_index(req.item_id, "item_id")
        objectives = self._objectives(req.objectives)
        limit = self.settings.max_abs_reward
        if req.reward is not None and abs(req.reward) > limit:
            raise FieldError("reward", f"{req.reward} is outside [-{limit:g}, {limit:g}] "
                                       f"(the server's max_abs_reward)")
        now = time.time()
        timestamp = now if req.timestamp is None else req.timestamp
        if req.timestamp is not None:
            if timestamp > now + self.settings.future_tolerance_s:
                raise FieldError("timestamp", f"{timestamp} lies in the future (server clock "
                                              f"{now:.0f})")
            user = self.user_index(req.user_id)
            if self.has_clock and user:
                last = float(self.data.time[self.data.user_events(user)[-1]])
                if timestamp < last:
                    raise FieldError("timestamp", f"{timestamp} is before the user's last "
                                                  f"logged event ({last})")
        return FeedbackEvent(user_id=req.user_id, item_id=req.item_id, timestamp=timestamp,
                             objectives=objectives, reward=req.reward)

    def _objectives(self, values: dict[str, float] | None) -> dict[str, float] | None:
        if values is None:
            return None
        for name in values:
            if name not in self.names:
                raise FieldError(f"objectives.{name}", f"unknown objective; expected "
                                                       f"{list(self.names)}")
        missing = [n for n in self.names if n not in values]
        if missing:
            raise FieldError(f"objectives.{missing[0]}", f"missing; give every objective "
                                                         f"{list(self.names)} or none")
        for name, value in values.items():
            if not 0.0 <= value <= 1.0 or not math.isfinite(value):
                raise FieldError(f"objectives.{name}", f"{value} is outside [0, 1]")
        return {n: float(values[n]) for n in self.names}

    def user_state(self, user_id: str, timestamp: float | None) -> dict[str, object]:
        history = self.history(user_id)
        at_time = self.request_time(history, timestamp)
        context = self.request_context(history, at_time, None)
        scored = self.score(history, at_time, context, self.catalogue[:, :1], 1)
        steps = [{"item_id": self.data.item_ids[int(i) - 1], "timestamp": float(t),
                  "source": src}
                 for i, t, src in zip(history.items, history.times, history.sources,
                                      strict=True)][-self.length:]
        return {"user_id": user_id, "known_user": history.user != 0,
                "model_version": self.version, "logged_events": history.logged_events,
                "feedback_events": self.store.count(user_id), "timestamp": at_time,
                "history": steps, "weights": dict(zip(self.names, scored.weights.tolist(),
                                                      strict=True)),
                "state": scored.state.tolist()}

    def health(self) -> dict[str, object]:
        self.store.ping()
        return {"status": "ok", "model_version": self.version, "users": self.data.n_users,
                "items": self.data.n_items, "objectives": list(self.names),
                "uptime_s": time.time() - self.started}

    def close(self) -> None:
        self.store.close()
