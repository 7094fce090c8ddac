"""Time stage 2 alone (the configured weight learner's fit) on a complete run, one thread:

    .venv/bin/python benchmarks/stage2_time.py RUN

Prints one JSON line: the code it imported, stage 2's seconds, the check's gain and what the
run would serve. Nothing is written to the run. To compare two versions of the code on the
same run, alternate it with another checkout: PYTHONPATH=OTHER/src .venv/bin/python ..."""

from __future__ import annotations

import argparse
import json
import time

import torch

import deepprl
from deepprl.artifacts import build_policy, load_weighted_run, run_split
from deepprl.distributed import SINGLE
from deepprl.learners import weight_learner
from deepprl.recommender import Recommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config, saved = load_weighted_run(args.run)
    data, split = saved.data, run_split(saved.data, config)
    torch.manual_seed(config.seed)
    recommender = Recommender(saved.model, build_policy(config, saved.model, data), data)
    start = time.perf_counter()
    _, _, check = weight_learner(config.policy.algorithm).fit()(
        recommender, data, split, config, progress=None, world=SINGLE)
    seconds = time.perf_counter() - start
    check = check or {}
    print(json.dumps({"code": deepprl.__file__, "stage2_seconds": seconds,
                      "gain": check.get("gain"), "served": check.get("served")}))


if __name__ == "__main__":
    main()
