"""Train and evaluate every registered model on one dataset, under the shared protocol.

.venv/bin/python benchmarks/all_models.py --dataset simulator [--models deepprl mmoe ...]
Prints one JSON line per model (reward and objectives of its own ranking, plus the
references of weighted models), then a summary sorted by reward. Runs go to --out."""

from __future__ import annotations

import argparse
import json
import time

from deepprl.config import RunConfig
from deepprl.train.run import train_run
from deepprl.zoo import configure, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="simulator")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/all-models")
    args = parser.parse_args()
    rows = []
    for name in args.models or list(models()):
        start = time.perf_counter()
        config = configure(name, RunConfig(dataset={"name": args.dataset}, seed=args.seed))
        m = train_run(config, f"{args.out}/{args.dataset}/{name}", overwrite=True)
        row = {"model": name, "dataset": args.dataset, "reward": m["learned"]["reward"],
               "objectives": m["learned"]["objectives"],
               "references": {r: m[r]["reward"] for r in ("equal", "static", "popularity",
                                                         "oracle") if r in m},
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ranking = sorted(rows, key=lambda r: -r["reward"])
    print(json.dumps({"dataset": args.dataset, "ranking": [(r["model"], round(r["reward"], 4))
                                                           for r in ranking]}))


if __name__ == "__main__":
    main()
