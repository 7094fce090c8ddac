"""Learned weights vs fixed equal weights vs the oracle on the simulator, over seeds.

.venv/bin/python benchmarks/simulator_seeds.py [--seeds 0 1 2] [--out runs/seeds]
Each seed s trains DeepPRL with run seed s on the simulator world of seed s (the world's
users, items and hidden preferences change too) and prints one JSON line; a summary last."""

from __future__ import annotations

import argparse
import json
import statistics

from deepprl.config import RunConfig
from deepprl.train.run import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/simulator-seeds")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        config = RunConfig(dataset={"name": "simulator", "seed": seed}, seed=seed)
        m = train_run(config, f"{args.out}/seed{seed}", overwrite=True)
        row = {"seed": seed, **{f"{k}_reward": m[k]["reward"]
                                for k in ("learned", "equal", "static", "popularity", "oracle")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    wins = sum(r["learned_reward"] > r["equal_reward"] for r in rows)
    print(json.dumps({
        "seeds": len(rows), "learned_beats_equal": wins,
        "median": {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"},
    }))


if __name__ == "__main__":
    main()
