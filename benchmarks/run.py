"""Run every benchmark and print one JSON object: `make bench` or
`.venv/bin/python benchmarks/run.py [--epochs N]`.

Each entry is measured in this one process, so ratios between entries are meaningful on a
shared, noisy machine; epoch times are medians over the timed epochs."""

from __future__ import annotations

import argparse
import json

from deepprl.bench import BENCH_MODELS, bench_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    results = {model: bench_train(args.dataset, model, epochs=args.epochs)
               for model in BENCH_MODELS}
    print(json.dumps({"train": results}, indent=2))


if __name__ == "__main__":
    main()
