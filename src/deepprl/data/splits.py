"""Seeded splits of a log into training and test events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepprl.data.interactions import Interactions


@dataclass(frozen=True, eq=False)
class Split:
    """Boolean masks over events [N]; `valid` is part of the training period, held out."""

    train: np.ndarray
    test: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        overlap = (self.train & self.test) | (self.train & self.valid) | (self.valid & self.test)
        if overlap.any():
            raise ValueError("split parts overlap")


def make_split(data: Interactions, *, kind: str = "temporal", test_fraction: float = 0.2,
               valid_fraction: float = 0.0, folds: int = 5, fold: int = 0, seed: int = 0
               ) -> Split:
    """The split a run uses, by name: temporal hold-out or one fold of a time-stratified
    k-fold (with validation, the next fold is the validation set)."""
    if kind == "temporal":
        return temporal_holdout(data, test_fraction=test_fraction,
                                valid_fraction=valid_fraction)
    if kind == "kfold":
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in [0, {folds}), got {fold}")
        parts = time_stratified_kfold(data, k=folds, seed=seed)
        if valid_fraction <= 0:
            return parts[fold]
        valid = parts[(fold + 1) % folds].test  # the next fold validates
        return Split(train=parts[fold].train & ~valid, test=parts[fold].test, valid=valid)
    raise ValueError(f"unknown split {kind!r}; expected 'temporal' or 'kfold'")


def _position_in_user(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Each event's 0-based rank within its user's events, and that user's event count."""
    starts = np.flatnonzero(np.r_[True, data.user[1:] != data.user[:-1]])
    counts = np.diff(np.r_[starts, data.n_events])
    position = np.arange(data.n_events) - np.repeat(starts, counts)
    return position, np.repeat(counts, counts)


def temporal_holdout(data: Interactions, *, test_fraction: float = 0.2,
                     valid_fraction: float = 0.0) -> Split:
    """Per user: the last `test_fraction` of events is test, the `valid_fraction` before it
    is validation, the rest training. A user with a single event only trains."""
    if not 0 < test_fraction < 1 or not 0 <= valid_fraction < 1 - test_fraction:
        raise ValueError("need 0 < test_fraction < 1 and 0 <= valid_fraction < 1 - test_fraction")
    position, count = _position_in_user(data)
    n_test = np.where(count > 1, np.maximum(1, np.round(count * test_fraction)), 0)
    n_valid = np.where(count > 2, np.round(count * valid_fraction), 0)
    test = position >= count - n_test
    valid = ~test & (position >= count - n_test - n_valid)
    return Split(train=~test & ~valid, test=test, valid=valid)


def time_stratified_kfold(data: Interactions, *, k: int = 5, seed: int = 0) -> list[Split]:
    """k folds with the same time distribution: events are sorted by time, cut into
    consecutive blocks of k, and each block deals one event to each fold in a seeded order."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    rng = np.random.default_rng(seed)
    order = np.argsort(data.time, kind="stable")
    n_blocks = -(-data.n_events // k)
    labels = np.concatenate([rng.permutation(k) for _ in range(n_blocks)])[: data.n_events]
    fold = np.empty(data.n_events, dtype=np.int64)
    fold[order] = labels
    none = np.zeros(data.n_events, dtype=bool)
    return [Split(train=fold != f, test=fold == f, valid=none) for f in range(k)]
