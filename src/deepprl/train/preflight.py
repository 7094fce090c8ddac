"""Every precondition of a run, checked on the data before any training.

Stage 1 needs training events; stage 2 needs training events with more than k
candidates; static-weight tuning (a static-weight model, the `static` reference of every
weighted model, an item-level baseline's weights) needs validation events with more than
k candidates; the evaluation needs test events with more than k candidates. A run that
would fail at any of these fails here, in seconds, with the fix in the message.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_counts, count_rankable
from deepprl.data.splits import Split, choose_split

log = logging.getLogger("deepprl.train.preflight")


class PreflightError(ValueError):
    """A run that cannot complete on this data; the message says how to fix it."""


@dataclass(frozen=True, eq=False)
class Plan:
    """The split a run uses and what train.log says about it."""

    split: Split
    validation: str
    """Which validation was chosen and why (one line)."""
    notes: tuple[str, ...]
    """Every line logged, the validation line first."""


def preflight(config: RunConfig, data: Interactions) -> Plan:
    """The run's split, after checking that every stage will have what it needs;
    PreflightError naming the fix otherwise. Logs the choices to deepprl.train."""
    t, k = config.train, config.eval.k
    split, validation = choose_split(data, kind=t.split, test_fraction=t.test_fraction,
                                     valid_fraction=t.valid_fraction, folds=t.folds,
                                     fold=t.fold, seed=config.seed, validation=t.validation,
                                     k=k)
    where = f"{data.log_name} ({data.n_users} users, {data.n_events} events)"
    if not split.train.any():
        raise PreflightError(f"{where}: the split leaves no training events (every user has "
                             f"too few events); lower train.test_fraction and "
                             f"train.valid_fraction or use a longer log")
    notes = [validation, _check_test(config, data, split, where)]
    item_level = config.name in ITEM_POLICIES
    if not item_level and config.policy.algorithm != "static":
        notes.append(_check_policy_pool(config, data, split, where))
    if _tunes_static_weights(config, split):
        notes.append(_check_validation(config, data, split, where, validation))
    for note in notes:
        log.info("preflight: %s", note)
    return Plan(split=split, validation=validation, notes=tuple(notes))


def check_out_dir(out: str | Path) -> None:
    """PreflightError unless `out` is a directory, or can be made one, that we may write."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PreflightError(f"{out}: --out names an existing file, not a directory; give a "
                             f"directory path for the run")
    parent = out
    while not parent.exists() and parent != parent.parent:  # nearest existing ancestor
        parent = parent.parent
    if not parent.is_dir():
        raise PreflightError(f"{out}: cannot create the run directory: {parent} is a file, "
                             f"not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PreflightError(f"{out}: cannot create or write the run directory: {parent} is "
                             f"not writable")


def _tunes_static_weights(config: RunConfig, split: Split) -> bool:
    """Whether the run will tune static weights on validation events (and so need them)."""
    entry = ITEM_POLICIES.get(config.name)
    if entry is not None:  # an item-level baseline with weights to tune, where not given
        fields = {f.name for f in dataclasses.fields(entry.config)}
        return "weights" in fields and "weights" not in config.baseline and bool(split.valid.any())
    if config.policy.algorithm == "static":
        if not split.valid.any():
            raise PreflightError("a static-weight model tunes its weights on validation "
                                 "events and the split has none: set train.valid_fraction "
                                 "> 0 (e.g. --set train.valid_fraction=0.1)")
        return True
    return bool(split.valid.any())  # the `static` reference of every weighted model


def _largest(data: Interactions, mask: np.ndarray) -> int:
    """Most candidates any user's events have within `mask`."""
    counts = candidate_counts(data, mask)
    return int(counts[np.unique(data.user[mask])].max()) if mask.any() else 0


def _fewer_k(largest: int) -> str:
    return f"lower k (e.g. --k {largest - 1})" if largest >= 2 else "use a longer log"


def _check_test(config: RunConfig, data: Interactions, split: Split, where: str) -> str:
    k = config.eval.k
    total, rankable = int(split.test.sum()), count_rankable(data, split.test, k=k)
    if rankable == 0:
        largest = _largest(data, split.test)
        raise PreflightError(
            f"{where}: no test event has more than k={k} candidates (a test event's "
            f"candidates are its user's distinct items in the test period, and the largest "
            f"such set holds {largest}), so no ranking could be evaluated; "
            f"{_fewer_k(largest)}{_wider_test(config, data)}")
    excluded = total - rankable
    return (f"evaluation: {rankable} of {total} test events have more than k={k} candidates; "
            f"{excluded} ({excluded / max(total, 1):.0%}) are excluded, since every ranking "
            f"picks the same items there")


def _wider_test(config: RunConfig, data: Interactions) -> str:
    """', or raise train.test_fraction to X' for the smallest X in a few steps that works."""
    t = config.train
    if t.split != "temporal":
        return ""
    for fraction in (0.3, 0.4, 0.5):
        if fraction <= t.test_fraction or t.valid_fraction >= 1 - fraction:
            continue
        split, _ = choose_split(data, test_fraction=fraction, valid_fraction=0.0)
        if count_rankable(data, split.test, k=config.eval.k) > 0:
            return f", or raise the test period (--set train.test_fraction={fraction})"
    return ""


def _check_policy_pool(config: RunConfig, data: Interactions, split: Split, where: str
                       ) -> str:
    k, cap = config.eval.k, config.train.max_candidates
    if cap <= k:
        raise PreflightError(f"train.max_candidates = {cap} must exceed k = {k}: the weight "
                             f"policy learns from events with more than k candidates (e.g. "
                             f"--set train.max_candidates={max(100, k + 1)})")
    pool = split.train | split.valid
    rankable = count_rankable(data, pool, k=k, max_candidates=cap)
    if rankable == 0:
        raise PreflightError(
            f"{where}: no training event has more than k={k} candidates (a training event's "
            f"candidates are its user's distinct items before the test period, and the "
            f"largest such set holds {_largest(data, pool)}): the weight policy would have "
            f"nothing to learn from; {_fewer_k(_largest(data, pool))}")
    return (f"weight policy: {rankable} of {int(pool.sum())} training events have more than "
            f"k={k} candidates to learn from")


def _check_validation(config: RunConfig, data: Interactions, split: Split, where: str,
                      validation: str) -> str:
    k = config.eval.k
    rankable = count_rankable(data, split.valid, k=k)
    if rankable == 0:
        largest = _largest(data, split.valid)
        skip = "" if config.policy.algorithm == "static" and config.name not in ITEM_POLICIES \
            else ", or --set train.valid_fraction=0 to skip the static-weight reference"
        raise PreflightError(
            f"{where}: no validation event has more than k={k} candidates, so static "
            f"weights cannot be tuned (a validation event's candidates are its user's "
            f"distinct items in the validation window, and the largest holds {largest}; "
            f"{validation}); {_fewer_k(largest)}, widen the windows (--set "
            f"train.validation=test-window or a larger train.valid_fraction){skip}")
    return (f"static-weight tuning: {rankable} of {int(split.valid.sum())} validation events "
            f"have more than k={k} candidates")
