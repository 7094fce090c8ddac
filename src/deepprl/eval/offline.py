"""Evaluate a trained run under the offline protocol, against simple references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepprl.artifacts import load_run, run_split, served_record
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig
from deepprl.data.splits import Split
from deepprl.eval.evaluator import (
    EvalSet,
    build_eval_set,
    describe,
    oracle_scores,
    popularity_scores,
    score_table,
)
from deepprl.eval.static_weights import tune_static_weights
from deepprl.policy.weights import FixedWeights
from deepprl.ranking import Ranker

METHODS = ("learned", "equal", "static", "popularity", "oracle")


def evaluate_ranker(ranker: Ranker, config: RunConfig, split: Split | None = None,
                    methods: tuple[str, ...] = METHODS, *,
                    static_weights: np.ndarray | None = None) -> dict[str, Any]:
    """{method: {"objectives": {...}, "reward": x}} plus "protocol".

    learned: the run's own ranking; equal: the run's predictor with fixed equal weights;
    static: the run's predictor with the best static weights on validation (Optuna; both
    for models with learned objective weights only, and static only where the split has
    validation events); popularity; oracle: rank by the true reward (upper bound).
    `static_weights`, when the caller has tuned them already, are used instead of tuning
    again."""
    data, k = ranker.data, config.eval.k
    split = split if split is not None else run_split(data, config)
    eval_set = build_eval_set(data, split, k=k, max_events=config.eval.max_events,
                              seed=config.seed)
    out: dict[str, Any] = {"protocol": describe(eval_set, k)}
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        table = _method_table(method, ranker, config, split, eval_set, static_weights)
        if table is not None:
            out[method] = table
    return out


def _method_table(method: str, ranker: Ranker, config: RunConfig, split: Split,
                  eval_set: EvalSet, static_weights: np.ndarray | None
                  ) -> dict[str, Any] | None:
    """One method's table of evaluate_ranker, or None where it does not apply."""
    data, k, names = ranker.data, config.eval.k, ranker.data.objective_names
    events, items = eval_set.events, eval_set.items
    if method == "popularity":
        return score_table(eval_set, popularity_scores(data, split.train, eval_set), k, names)
    if method == "oracle":
        return score_table(eval_set, oracle_scores(eval_set), k, names)
    alpha = ranker.learned_weights(events, items)
    if method == "learned":
        table = score_table(eval_set, ranker.scores(events, items), k, names)
        if alpha is not None:
            table["mean_weights"] = dict(zip(names, alpha.mean(0).tolist(), strict=True))
        return table
    if alpha is None:
        return None  # no predictor to weight (an item-level policy)
    if method == "equal":
        equal = np.full(data.n_objectives, 1.0 / data.n_objectives, dtype=np.float32)
        fixed = FixedWeights.equal(data.n_objectives).weights  # [K], as ranked
        return {**score_table(eval_set, _weighted(ranker, eval_set, equal), k, names),
                "mean_weights": dict(zip(names, fixed.expand(len(events), -1).numpy()
                                         .mean(0).tolist(), strict=True))}
    if not split.valid.any():
        return None  # static: nothing to tune on
    weights = static_weights if static_weights is not None else tune_static_weights(
        ranker, data, split, k=k, trials=config.policy.static_trials, seed=config.seed)[0]
    return {**score_table(eval_set, _weighted(ranker, eval_set, weights), k, names),
            "weights": dict(zip(names, weights.tolist(), strict=True))}


def _weighted(ranker: Ranker, eval_set: EvalSet, weights: np.ndarray) -> np.ndarray:
    scores = ranker.static_scores(eval_set.events, eval_set.items, weights)
    if scores is None:
        raise ValueError("this model has learned weights but no predictor to reweight")
    return scores


REFERENCES = {"learned": "the run's own ranking", "equal": "its predictor, equal weights",
              "static": "its predictor, the best static weights on validation",
              "popularity": "training-period popularity",
              "oracle": "upper bound: rank by the true reward"}
"""What `deepprl evaluate --weights` offers: every reference evaluate_ranker computes."""


def evaluate_run(run: str | Path, weights: str = "learned") -> dict[str, Any]:
    """The CLI contract's JSON: objectives, reward, k, weights (+ model, protocol).

    `weights` names one of REFERENCES. A static-weight model's own ranking is its static
    weights, so "learned" and "static" both evaluate them and the JSON says "static"."""
    if weights not in REFERENCES:
        raise ValueError(f"--weights must be one of {', '.join(REFERENCES)}, got {weights!r}")
    config, ranker = load_run(run)
    # a static-weight model's own ranking is its static weights
    own_static = config.name not in ITEM_POLICIES and config.policy.algorithm == "static"
    method = "learned" if own_static and weights == "static" else weights
    result = evaluate_ranker(ranker, config, methods=(method,))
    if method not in result and method == "equal":
        raise ValueError(f"--weights equal needs a model with an objective predictor; "
                         f"{config.name!r} ranks items directly (offered: learned, "
                         f"popularity, oracle)")
    if method not in result:
        raise ValueError(f"{run}: --weights static needs a model with an objective "
                         f"predictor and validation events to tune on ({config.name!r}, "
                         f"train.valid_fraction = {config.train.valid_fraction})")
    label = "static" if own_static and method == "learned" else method
    out = {**result[method], "k": config.eval.k, "weights": label, "model": config.name,
           "protocol": result["protocol"]}
    record = served_record(run)
    if "policy_check" in record:  # a learner checked against static alpha on held-out users
        check = record["policy_check"]
        out.update({"served": record["served"], "policy_check": {
            key: check.get(key) for key in CHECK_KEYS}})
    return out


CHECK_KEYS = ("checked", "learned", "static", "gain", "gain_lower_bound", "p_value", "users",
              "static_weights", "verdict")
"""The pessimism check's figures `deepprl evaluate` shows (deepprl.train.pessimism)."""
