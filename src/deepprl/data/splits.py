"""Seeded splits of a log into training and test events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepprl.config import VALIDATIONS
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import count_rankable, fully_observed


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


MIN_VALID_EVENTS = 100
"""auto keeps the valid_fraction windows while they leave at least this many validation
events with more than k candidates (or no fewer than test-sized windows would)."""


def make_split(data: Interactions, *, kind: str = "temporal", test_fraction: float = 0.2,
               valid_fraction: float = 0.0, folds: int = 5, fold: int = 0, seed: int = 0,
               validation: str = "fraction", k: int = 10) -> Split:
    """The split a run uses, by name: temporal hold-out or one fold of a time-stratified
    k-fold (with validation, the next fold is the validation set). `validation` and `k`
    choose the temporal validation windows (see choose_split)."""
    return choose_split(data, kind=kind, test_fraction=test_fraction,
                        valid_fraction=valid_fraction, folds=folds, fold=fold, seed=seed,
                        validation=validation, k=k)[0]


def choose_split(data: Interactions, *, kind: str = "temporal", test_fraction: float = 0.2,
                 valid_fraction: float = 0.0, folds: int = 5, fold: int = 0, seed: int = 0,
                 validation: str = "fraction", k: int = 10) -> tuple[Split, str]:
    """make_split's split and one line saying which validation it holds and why.

    Temporal validation: "fraction" takes round(valid_fraction x the user's event count)
    events just before each user's test period; "test-window" makes each user's window
    at least as long as their test window (validation then ranks candidate sets like the
    test's); "auto" is "fraction" unless that leaves fewer than MIN_VALID_EVENTS
    validation events with more than k candidates (and the test-sized windows leave
    more). Where ground truth is fully known the candidates do not depend on the window,
    so auto keeps "fraction". valid_fraction = 0 (with fraction or auto): no validation."""
    if kind == "kfold":
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in [0, {folds}), got {fold}")
        parts = time_stratified_kfold(data, k=folds, seed=seed)
        if valid_fraction <= 0:
            return parts[fold], "validation: none (train.valid_fraction = 0)"
        valid = parts[(fold + 1) % folds].test  # the next fold validates
        return (Split(train=parts[fold].train & ~valid, test=parts[fold].test, valid=valid),
                f"validation: fold {(fold + 1) % folds} of {folds} (the fold after the test's)")
    if kind != "temporal":
        raise ValueError(f"unknown split {kind!r}; expected 'temporal' or 'kfold'")
    if validation not in VALIDATIONS:
        raise ValueError(f"unknown validation {validation!r}; expected one of {VALIDATIONS}")
    if valid_fraction <= 0 and validation != "test-window":
        return (temporal_holdout(data, test_fraction=test_fraction),
                "validation: none (train.valid_fraction = 0)")
    fraction_words = (f"{valid_fraction:.0%} of each user's events just before their test "
                      f"period")
    window_words = "each user's window as long as their test window"
    if validation == "test-window":
        split = temporal_holdout(data, test_fraction=test_fraction,
                                 valid_fraction=valid_fraction, valid_window="test")
        return split, (f"validation: {window_words} (train.validation = test-window); "
                       f"{count_rankable(data, split.valid, k=k)} validation events have "
                       f"more than k={k} candidates")
    split = temporal_holdout(data, test_fraction=test_fraction, valid_fraction=valid_fraction)
    usable = count_rankable(data, split.valid, k=k)
    kept = (f"validation: {fraction_words} (train.valid_fraction = {valid_fraction}); "
            f"{usable} validation events have more than k={k} candidates")
    if validation == "fraction" or fully_observed(data) or usable >= MIN_VALID_EVENTS:
        return split, kept
    wider = temporal_holdout(data, test_fraction=test_fraction, valid_fraction=valid_fraction,
                             valid_window="test")
    wider_usable = count_rankable(data, wider.valid, k=k)
    if wider_usable <= usable:
        return split, kept
    return wider, (f"validation: {window_words} (train.validation = auto: "
                   f"{fraction_words} would leave {usable} validation events with more "
                   f"than k={k} candidates, fewer than {MIN_VALID_EVENTS}; the wider windows "
                   f"leave {wider_usable})")


def _position_in_user(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Each event's 0-based rank within its user's events, and that user's event count."""
    starts = np.flatnonzero(np.r_[True, data.user[1:] != data.user[:-1]])
    counts = np.diff(np.r_[starts, data.n_events])
    position = np.arange(data.n_events) - np.repeat(starts, counts)
    return position, np.repeat(counts, counts)


def temporal_holdout(data: Interactions, *, test_fraction: float = 0.2,
                     valid_fraction: float = 0.0, valid_window: str = "fraction") -> Split:
    """Per user: the last `test_fraction` of events is test, the `valid_fraction` of the
    user's events before it is validation (both shares of all the user's events), the rest
    training. valid_window = "test" makes each validation window at least as long as the
    user's test window (keeping one training event). A user with a single event only
    trains; a user with two has no validation."""
    if not 0 < test_fraction < 1 or not 0 <= valid_fraction < 1 - test_fraction:
        raise ValueError("need 0 < test_fraction < 1 and 0 <= valid_fraction < 1 - test_fraction")
    if valid_window not in ("fraction", "test"):
        raise ValueError(f"valid_window must be 'fraction' or 'test', got {valid_window!r}")
    position, count = _position_in_user(data)
    n_test = np.where(count > 1, np.maximum(1, np.round(count * test_fraction)), 0)
    n_valid = np.where(count > 2, np.round(count * valid_fraction), 0)
    if valid_window == "test":
        n_valid = np.where(count > 2, np.clip(np.maximum(n_valid, n_test), 0,
                                              np.maximum(count - n_test - 1, 0)), 0)
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
