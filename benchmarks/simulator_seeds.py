"""Learned weights vs fixed equal weights, the best static alpha and the oracle on the
simulator, over seeds; and how well the learned alpha tracks the true preference.

.venv/bin/python benchmarks/simulator_seeds.py [--seeds 0 1 2] [--out runs/seeds] [--reuse]
       [--set policy.algorithm=ddpg ...]
Each seed s trains DeepPRL with run seed s on the simulator world of seed s (the world's
users, items and hidden preferences change too) and prints one JSON line; a summary last.
gap_closed = (learned - static) / (oracle - static), test-period reward; the preference
figures are deepprl.eval.preference.preference_recovery; "predictor_ceiling_closed" is the
share of that gap that ranking the predicted objectives with the TRUE preference closes
(deepprl.eval.preference.preference_ceiling: what no alpha learner on this predictor can
exceed without hindsight). "default_served_reward" / "default_gap_closed": what the
default policy.fallback = "static" serves, from the check's verdict (the learned policy
where it is "learned", else the check's static alpha evaluated on the test events), so
one run with --set policy.fallback=none gives both. --reuse measures complete runs already
in --out instead of training them again."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from deepprl.artifacts import load_weighted_run, read_json, run_split
from deepprl.cli.common import apply_settings
from deepprl.config import RunConfig
from deepprl.eval.evaluator import build_eval_set, score_table
from deepprl.eval.preference import (
    grid_headroom,
    grid_on_test,
    preference_ceiling,
    preference_recovery,
)
from deepprl.rundir import read_marker
from deepprl.train.run import train_run


def measure(run: Path, metrics: dict) -> dict:
    """One seed's figures from its complete run directory and metrics."""
    config, recommender = load_weighted_run(run)
    split = run_split(recommender.data, config)
    recovery = preference_recovery(recommender, config, split)
    test = grid_on_test(recommender, config, split)  # scored once for both figures
    headroom = grid_headroom(recommender, config, split, test)
    ceiling = preference_ceiling(recommender, config, split, test)
    learned, static, oracle = (metrics[k]["reward"] for k in ("learned", "static", "oracle"))
    check = metrics.get("policy_check") or {}
    default = learned
    if check.get("verdict") == "static" and metrics.get("served") == "learned":
        es = build_eval_set(recommender.data, split, k=config.eval.k,
                            max_events=config.eval.max_events, seed=config.seed)
        scores = recommender.static_scores(es.events, es.items, check["static_weights"])
        default = score_table(es, scores, config.eval.k,
                              recommender.data.objective_names)["reward"]
    return {**{f"{k}_reward": metrics[k]["reward"]
               for k in ("learned", "equal", "static", "popularity", "oracle")},
            "gap_closed": (learned - static) / (oracle - static),
            "predictor_ceiling_closed": (ceiling["true_w_on_predicted"] - static) / (
                oracle - static),
            "served": metrics.get("served", "learned"), "verdict": check.get("verdict"),
            "default_served_reward": default,
            "default_gap_closed": (default - static) / (oracle - static),
            "check_gain": check.get("gain"), "check_lower_bound": check.get("gain_lower_bound"),
            "check_users": check.get("users"), "check_folds": check.get("folds"),
            "chosen_steps": metrics.get("stage2_last", {}).get("chosen_steps"),
            **{k: recovery[k] for k in ("correlation", "within_user_correlation_median",
                                        "within_users", "moving_users", "alpha_std",
                                        "truth_std")},
            **headroom, **ceiling, "gap_closed_of_grid": (learned - static) / (
                headroom["grid_per_event_hindsight"] - static),
            "seconds": metrics.get("seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/simulator-seeds")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        config = apply_settings(RunConfig(dataset={"name": "simulator", "seed": seed},
                                          seed=seed), args.settings)
        out = Path(args.out) / f"seed{seed}"
        if args.reuse and read_marker(out) is not None:
            m = read_json(out / "metrics.json")
        else:
            m = train_run(config, out, overwrite=True)
        row = {"seed": seed, **measure(out, m)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    wins = sum(r["learned_reward"] > r["equal_reward"] for r in rows)
    numeric = [k for k in rows[0] if k != "seed" and isinstance(rows[0][k], float)]
    print(json.dumps({
        "seeds": len(rows), "learned_beats_equal": wins,
        "served_static": sum(r["served"] == "static" for r in rows),
        "default_serves_static": sum(r["verdict"] == "static" for r in rows),
        "median": {k: statistics.median(r[k] for r in rows) for k in numeric},
    }))


if __name__ == "__main__":
    main()
