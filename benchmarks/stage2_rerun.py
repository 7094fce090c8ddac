"""Stage 2 again on complete runs, their stage-1 predictor kept: the weight learner of this
code (or another, --set policy.algorithm=...) against the run's own figures.

.venv/bin/python benchmarks/stage2_rerun.py RUN [RUN ...] [--set policy.patience=10]
Prints one JSON line per run: the test reward the run saved ("learned" in metrics.json)
and the one its predictor earns with the weights learned now, with the new pessimism
check; on the simulator, the preference figures of deepprl.eval.preference too. Nothing
is written to the runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from deepprl.artifacts import build_policy, load_weighted_run, read_json, run_split
from deepprl.cli.common import apply_settings
from deepprl.data.simulator import SimulatorValuer
from deepprl.distributed import SINGLE
from deepprl.eval.offline import evaluate_ranker
from deepprl.eval.preference import preference_recovery
from deepprl.learners import weight_learner
from deepprl.recommender import Recommender


def rerun(run: Path, settings: list[str]) -> dict:
    config, saved = load_weighted_run(run)
    config = apply_settings(config, settings)
    data, split = saved.data, run_split(saved.data, config)
    torch.manual_seed(config.seed)
    recommender = Recommender(saved.model, build_policy(config, saved.model, data), data)
    stage2, _, check = weight_learner(config.policy.algorithm).fit()(
        recommender, data, split, config, progress=None, world=SINGLE)
    if not config.policy.dynamic:
        recommender.fix_weights_at(split)
    metrics = read_json(run / "metrics.json")
    now = evaluate_ranker(recommender, config, split, methods=("learned",))["learned"]
    row = {"run": str(run), "saved_learned": metrics["learned"]["reward"],
           "saved_served": metrics.get("served"), "learned_now": now["reward"],
           "static": metrics.get("static", {}).get("reward"),
           "oracle": metrics["oracle"]["reward"], "stage2_last": stage2[-1],
           "check": check}
    if row["static"] is not None:
        row["gap_closed_now"] = (now["reward"] - row["static"]) / (row["oracle"]
                                                                  - row["static"])
    if isinstance(data.valuer, SimulatorValuer):
        row["preference"] = preference_recovery(recommender, config, split)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args()
    for run in args.runs:
        print(json.dumps(rerun(run, args.settings), default=float), flush=True)


if __name__ == "__main__":
    main()
