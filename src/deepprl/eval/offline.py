"""Evaluate a trained run under the offline protocol, against simple references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import load_run, run_split
from deepprl.config import RunConfig
from deepprl.data.splits import Split
from deepprl.eval.evaluator import (
    build_eval_set,
    describe,
    oracle_scores,
    popularity_scores,
    score_table,
)
from deepprl.eval.static_weights import tune_static_weights
from deepprl.policy.weights import FixedWeights
from deepprl.recommender import ItemRanker, Recommender

METHODS = ("learned", "equal", "static", "popularity", "oracle")


def evaluate_ranker(ranker: Recommender | ItemRanker, config: RunConfig,
                    split: Split | None = None, methods: tuple[str, ...] = METHODS, *,
                    static_weights: np.ndarray | None = None) -> dict[str, Any]:
    """{method: {"objectives": {...}, "reward": x}} plus "protocol".

    learned: the run's own ranking; equal: the run's predictor with fixed equal weights;
    static: the run's predictor with the best static weights on validation (Optuna; both
    for weighted models only, and static only where the split has validation events);
    popularity; oracle: rank by the true reward (upper bound). `static_weights`, when the
    caller has tuned them already, are used instead of tuning again."""
    data, k = ranker.data, config.eval.k
    split = split if split is not None else run_split(data, config)
    eval_set = build_eval_set(data, split, k=k, max_events=config.eval.max_events,
                              seed=config.seed)
    out: dict[str, Any] = {"protocol": describe(eval_set, k)}
    scored = ranker.score_events(eval_set.events, eval_set.items) \
        if isinstance(ranker, Recommender) else None
    for method in methods:
        if method == "learned" and isinstance(ranker, ItemRanker):
            out[method] = score_table(eval_set, ranker.scores(eval_set.events, eval_set.items),
                                      k, data.objective_names)
        elif method in ("learned", "equal") and isinstance(ranker, Recommender) \
                and scored is not None:
            policy = FixedWeights.equal(data.n_objectives) if method == "equal" else None
            scores, alpha = ranker.weighted_scores(eval_set.events, scored, policy)
            out[method] = {**score_table(eval_set, scores, k, data.objective_names),
                           "mean_weights": dict(zip(data.objective_names,
                                                    alpha.mean(0).tolist(), strict=True))}
        elif method == "static" and isinstance(ranker, Recommender) and scored is not None \
                and split.valid.any():
            weights = static_weights if static_weights is not None else tune_static_weights(
                ranker, data, split, k=k, trials=config.policy.static_trials,
                seed=config.seed)[0]
            scores, _ = ranker.weighted_scores(eval_set.events, scored,
                                      FixedWeights(torch.from_numpy(weights.astype("float32"))))
            out[method] = {**score_table(eval_set, scores, k, data.objective_names),
                           "weights": dict(zip(data.objective_names, weights.tolist(),
                                               strict=True))}
        elif method in ("equal", "static"):
            continue  # no predictor to weight (item-level policy) or nothing to tune on
        elif method == "popularity":
            out[method] = score_table(eval_set, popularity_scores(data, split.train, eval_set),
                                      k, data.objective_names)
        elif method == "oracle":
            out[method] = score_table(eval_set, oracle_scores(eval_set), k,
                                      data.objective_names)
        else:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return out


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
    if weights in ("equal", "static") and not isinstance(ranker, Recommender):
        raise ValueError(f"--weights {weights} needs a model with an objective predictor; "
                         f"{config.name!r} ranks items directly (offered: learned, "
                         f"popularity, oracle)")
    own_static = isinstance(ranker, Recommender) and config.policy.algorithm == "static"
    method = "learned" if own_static and weights == "static" else weights
    result = evaluate_ranker(ranker, config, methods=(method,))
    if method not in result:
        raise ValueError(f"{run}: --weights static needs validation events, and this run has "
                         f"none (train.valid_fraction = {config.train.valid_fraction})")
    label = "static" if own_static and method == "learned" else method
    return {**result[method], "k": config.eval.k, "weights": label, "model": config.name,
            "protocol": result["protocol"]}
