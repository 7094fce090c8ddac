"""`deepprl evaluate --run DIR` as a user runs it: a new process each call, against
`python -c "import torch"` timed in the same loop (the floor of any command that imports
torch), plus an in-process breakdown of what the speed-ups of evaluation bought. Prints one
JSON object.

    .venv/bin/python benchmarks/evaluate_start.py [--run DIR] [--calls 5]

Without --run it trains a default DeepPRL run on MovieLens-100K first (minutes). The two
commands alternate so machine noise hits both alike; medians are reported. In process, on
the same run: the forward passes the run's stored predictions (scored.safetensors) save
(every method of evaluate_ranker with and without them; the numbers must agree), and
valuing a padded candidate array whole versus pair by pair (Interactions.candidate_values).
Target (issue 17): evaluate of a MovieLens-100K run <= 3 s wall, process start included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 3.0


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _median(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}




def in_process(run: Path, repeats: int) -> dict[str, Any]:
    """Seconds (median of `repeats`) of evaluate_ranker (every method) with the stored
    predictions and with them forgotten, and of valuing the test candidates whole / by pair."""
    import numpy as np
    import torch

    from deepprl.artifacts import load_run, run_split
    from deepprl.data.interactions import LoggedValuer
    from deepprl.data.sequences import candidate_items
    from deepprl.eval.offline import evaluate_ranker
    from deepprl.io import numbers_of
    from deepprl.recommender import Recommender

    torch.set_num_threads(1)
    config, ranker = load_run(run)
    if not isinstance(ranker, Recommender):
        raise ValueError(f"{run}: not a weighted run")
    stored_sets = ranker.remembered()

    def timed(forget: bool) -> tuple[float, dict[str, Any]]:
        ranker.remember({} if forget else stored_sets)
        start = time.perf_counter()
        result = evaluate_ranker(ranker, config)
        return time.perf_counter() - start, result

    stored = [timed(False) for _ in range(repeats)]
    recomputed = [timed(True) for _ in range(repeats)]
    a, b = numbers_of(stored[0][1]), numbers_of(recomputed[0][1])
    data = ranker.data
    split = run_split(data, config)
    events = np.flatnonzero(split.test)
    items = candidate_items(data, events, split.test)
    valuer = data.valuer if data.valuer is not None else LoggedValuer()
    whole, pairs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        valuer.values(data, events, items)
        whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        data.candidate_values(events, items)
        pairs.append(time.perf_counter() - start)
    return {
        "stored_sets": len(stored_sets) // 4,
        "evaluate_ranker_s": {"stored_predictions": statistics.median(s for s, _ in stored),
                              "recomputed": statistics.median(s for s, _ in recomputed)},
        "max_abs_difference": max((abs(x - y) for x, y in zip(a, b, strict=True)),
                                  default=0.0),
        "test_candidates": list(items.shape), "real_pairs": int((items > 0).sum()),
        "candidate_values_s": {"whole_padded": statistics.median(whole),
                               "pair_by_pair": statistics.median(pairs)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a MovieLens-100K run")
    parser.add_argument("--calls", type=int, default=5, help="timed calls of each command")
    args = parser.parse_args()
    deepprl = [sys.executable, "-m", "deepprl"]
    with tempfile.TemporaryDirectory(prefix="deepprl-evaluate-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            subprocess.run([*deepprl, "train", "--dataset", "movielens-100k", "--out",
                            str(run), "--quiet"], check=True, stdout=subprocess.DEVNULL)
        evaluate = [*deepprl, "evaluate", "--run", str(run), "--json"]
        torch_only = [sys.executable, "-c", "import torch"]
        _seconds(evaluate)  # warm the file cache
        wall, floor = [], []
        for _ in range(args.calls):
            wall.append(_seconds(evaluate))
            floor.append(_seconds(torch_only))
        breakdown = in_process(run, repeats=3)
    median = statistics.median(wall)
    print(json.dumps({
        "evaluate_s": _median(wall), "import_torch_s": _median(floor),
        "above_import_torch_s": median - statistics.median(floor),
        "in_process": breakdown,
        "target_s": TARGET_S, "met": median <= TARGET_S, "calls": args.calls,
    }, indent=2))


if __name__ == "__main__":
    main()
