"""Who gets which arm, and how an arm ranks a session's candidates.

Arms are assigned by hashing the consumer id (blake2b with a salt -> bucket), so the
assignment is stable across runs, machines and Python versions. A model arm ranks with
a trained deepprl Recommender (DeepPRL, or MMoE with static weights): the consumer's
state is built from the last L videos shown to them, kept in a HistoryStore that the
experiment updates after every session; the session's context is its clock time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch, make_batch
from deepprl.ranking import clock_features, history_gaps, score_batch, top_k
from deepprl.ranking.history import mean_user_embedding
from deepprl.recommender import Recommender

BUCKETS = 10_000


def hash_bucket(user_id: object, salt: str) -> int:
    """Stable bucket in [0, BUCKETS) of a consumer id: blake2b(salt:id), 8 bytes."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign_treatment(user_ids: np.ndarray | list[str], *, salt: str = "deepprl-ab",
                     share: float = 0.5) -> np.ndarray:
    """[U] bool: True for the treatment arm (bucket < share * BUCKETS)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"treatment share must lie in (0, 1), got {share}")
    cut = round(share * BUCKETS)
    return np.array([hash_bucket(u, salt) < cut for u in user_ids], dtype=bool)


def assign_arms(user_ids: np.ndarray | list[str], arms: dict[str, float], *,
                salt: str = "deepprl-ab") -> np.ndarray:
    """[U] arm names: consecutive bucket ranges in the order of `arms` (name -> share,
    shares positive and summing to 1)."""
    shares = np.array(list(arms.values()), dtype=np.float64)
    if len(arms) < 2 or (shares <= 0).any() or abs(shares.sum() - 1.0) > 1e-9:
        raise ValueError(f"arms need two or more positive shares summing to 1, got {arms}")
    cuts = np.round(np.cumsum(shares) * BUCKETS).astype(np.int64)
    buckets = np.array([hash_bucket(u, salt) for u in user_ids], dtype=np.int64)
    return np.array(list(arms), dtype=object)[np.searchsorted(cuts, buckets, side="right")]


def clock_steps(times: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Context rows [B, R, 5] of R steps per row at unix times [B, R]; prev [B] is the time
    of each row's previous step (NaN: none, gap 0). Same encoding as the training log."""
    return clock_features(times, preceding(times, prev))


def preceding(times: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """[B, R] the time of the step before each of R consecutive steps at times [B, R];
    prev [B] is the time before the first (NaN: none)."""
    return np.concatenate([prev[:, None], times[:, :-1]], axis=1)


@dataclass
class HistoryStore:
    """The last L steps of every consumer, in the model's item indices (0 = padding)."""

    items: np.ndarray  # [U, L] int64
    gaps: np.ndarray  # [U, L] float32, log1p(hours since the previous step)
    context: np.ndarray  # [U, L, Fc] float32
    last_time: np.ndarray  # [U] float64, NaN when the consumer has no step yet

    @classmethod
    def from_log(cls, data: Interactions, model_user: np.ndarray, length: int
                 ) -> HistoryStore:
        """Start from each consumer's last `length` logged events; model_user [U] is the
        consumer's user index in `data` (0: not in the log). The steps are encoded as
        training encodes them (make_batch)."""
        n = len(model_user)
        store = cls(items=np.zeros((n, length), dtype=np.int64),
                    gaps=np.zeros((n, length), dtype=np.float32),
                    context=np.zeros((n, length, data.context.shape[1]), dtype=np.float32),
                    last_time=np.full(n, np.nan))
        known = np.flatnonzero(model_user > 0)
        users = model_user[known]
        starts = np.searchsorted(data.user, users)
        ends = np.searchsorted(data.user, users + 1)
        idx = ends[:, None] - np.arange(length, 0, -1)[None, :]  # [n, L] oldest first
        logged = make_batch(data, np.where(idx >= starts[:, None], idx, -1), ends - 1)
        store.items[known] = logged.hist_items.numpy()
        store.context[known] = logged.hist_context.numpy()
        store.gaps[known] = logged.hist_gaps.numpy()
        store.last_time[known] = data.time[ends - 1]
        return store

    def append(self, users: np.ndarray, items: np.ndarray, times: np.ndarray,
               context: np.ndarray) -> None:
        """Add R steps per consumer: items [B, R], times [B, R], context [B, R, Fc]."""
        length = self.items.shape[1]
        r = min(items.shape[1], length)
        gaps = history_gaps(times, preceding(times, self.last_time[users]))  # [B, R]
        for name, new in (("items", items), ("gaps", gaps), ("context", context)):
            table = getattr(self, name)
            rolled = np.concatenate([table[users], new[:, -r:]], axis=1)[:, -length:]
            table[users] = rolled
        self.last_time[users] = times[:, -1]

    def batch(self, users: np.ndarray, model_user: np.ndarray, context: np.ndarray
              ) -> Batch:
        """Model inputs for one next event per consumer users [B] with context [B, Fc]."""
        items = self.items[users]
        return Batch(user=torch.from_numpy(model_user[users]),
                     hist_items=torch.from_numpy(items),
                     hist_gaps=torch.from_numpy(self.gaps[users]),
                     hist_context=torch.from_numpy(self.context[users]),
                     hist_mask=torch.from_numpy(items > 0),
                     context=torch.from_numpy(context.astype(np.float32)))


class ModelArm:
    """Ranks candidates by sum_k alpha_k y_hat_k of a trained Recommender. Consumers unknown
    to the training log (new consumers) get the mean user embedding (cold start)."""

    def __init__(self, recommender: Recommender, model_user: np.ndarray) -> None:
        self.recommender = recommender
        self.model_user = model_user
        self.mean_user = mean_user_embedding(recommender.model)

    @torch.no_grad()
    def rank(self, store: HistoryStore, users: np.ndarray, items: np.ndarray,
             context: np.ndarray, *, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(order [B, C] best first, alpha [B, K]) for consumers users [B], candidate model
        item indices items [B, C] and the sessions' context [B, Fc]."""
        batch = store.batch(users, self.model_user, context)
        cold = torch.from_numpy(self.model_user[users] == 0)
        out = score_batch(self.recommender.model, self.recommender.policy, batch,
                          torch.from_numpy(items), user_embedding=self.mean_user, cold=cold,
                          chunk=chunk)
        order = top_k(out.scores, torch.ones_like(out.scores, dtype=torch.bool),
                      items.shape[1])  # every candidate, best first
        return order.numpy(), out.alpha.numpy()
