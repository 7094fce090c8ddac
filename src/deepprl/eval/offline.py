"""Evaluate a trained run under the offline protocol, against simple references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepprl.artifacts import load_run, run_split
from deepprl.config import RunConfig
from deepprl.eval.evaluator import (
    build_eval_set,
    describe,
    oracle_scores,
    policy_scores,
    popularity_scores,
    score_table,
)
from deepprl.policy.weights import FixedWeights
from deepprl.recommender import Recommender

METHODS = ("learned", "equal", "popularity", "oracle")


def evaluate_recommender(recommender: Recommender, config: RunConfig,
                         methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """{method: {"objectives": {...}, "reward": x}} plus "protocol"."""
    data, k = recommender.data, config.eval.k
    split = run_split(data, config)
    eval_set = build_eval_set(data, split, k=k, max_events=config.eval.max_events,
                              seed=config.seed)
    out: dict[str, Any] = {"protocol": describe(eval_set, k)}
    scored = None
    if {"learned", "equal"} & set(methods):
        scored = recommender.score_events(eval_set.events, eval_set.items)
    for method in methods:
        if method in ("learned", "equal"):
            assert scored is not None
            policy = FixedWeights.equal(data.n_objectives) if method == "equal" else None
            scores, alpha = policy_scores(recommender, scored, policy)
            out[method] = {**score_table(eval_set, scores, k, data.objective_names),
                           "mean_weights": dict(zip(data.objective_names,
                                                    alpha.mean(0).tolist(), strict=True))}
        elif method == "popularity":
            out[method] = score_table(eval_set, popularity_scores(data, split.train, eval_set),
                                      k, data.objective_names)
        elif method == "oracle":
            out[method] = score_table(eval_set, oracle_scores(eval_set), k,
                                      data.objective_names)
        else:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return out


def evaluate_run(run: str | Path, weights: str = "learned") -> dict[str, Any]:
    """The CLI contract's JSON: objectives, reward, k, weights (+ protocol details)."""
    if weights not in ("learned", "equal"):
        raise ValueError(f"--weights must be 'learned' or 'equal', got {weights!r}")
    config, recommender = load_run(run)
    result = evaluate_recommender(recommender, config, methods=(weights,))
    return {**result[weights], "k": config.eval.k, "weights": weights,
            "protocol": result["protocol"]}
