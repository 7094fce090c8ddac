"""Run every benchmark and print one JSON object: `make bench` or
`.venv/bin/python benchmarks/run.py [--epochs N]`.

Each entry is measured in this one process, so ratios between entries are meaningful on a
shared, noisy machine; epoch times are medians over the timed epochs."""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from deepprl.bench import BENCH_MODELS, bench_train
from deepprl.eval.pareto import hypervolume


def bench_hypervolume(n: int = 100_000, repeats: int = 7) -> dict[str, float]:
    """Median seconds for the hypervolume of n random two-objective points."""
    points = np.random.default_rng(0).random((n, 2))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        hypervolume(points, [0.0, 0.0])
        times.append(time.perf_counter() - start)
    return {"points": n, "seconds_median": statistics.median(times), "target_seconds": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    results = {model: bench_train(args.dataset, model, epochs=args.epochs)
               for model in BENCH_MODELS}
    print(json.dumps({"train": results, "hypervolume": bench_hypervolume()}, indent=2))


if __name__ == "__main__":
    main()
