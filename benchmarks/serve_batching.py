"""What scoring concurrent /recommend requests in one forward pass buys over HTTP:
`deepprl bench serve` against the same run with --max-batch 1 (each request on its own, as
before) and the default, alternated so machine noise hits both alike. Prints one JSON object.

    .venv/bin/python benchmarks/serve_batching.py [--run DIR] [--rounds 2]

Without --run it trains the small simulator run with 2,000 items that `deepprl bench serve`
trains. Targets (issue 17): concurrency 1 p99 <= 3 ms; >= 700 requests/s at concurrency 50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.serve.bench import bench_serve
from deepprl.train.run import train_run

TARGET_P99_MS_C1, TARGET_RPS_C50 = 3.0, 700.0


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def median(level: str, key: str) -> float:
        return statistics.median(r[level][key] for r in rounds)
    return {"c1_p50_ms": median("concurrency_1", "p50_ms"),
            "c1_p99_ms": median("concurrency_1", "p99_ms"),
            "c50_p99_ms": median("concurrency_50", "p99_ms"),
            "c50_requests_per_s": median("concurrency_50", "requests_per_s"),
            "rounds": [{"c1": r["concurrency_1"], "c50": r["concurrency_50"]} for r in rounds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each setting")
    parser.add_argument("--requests-c1", type=int, default=300)
    parser.add_argument("--requests-c50", type=int, default=1500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepprl-serve-batching-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            train_run(RunConfig(dataset={"name": "simulator", "n_users": 30, "n_items": 2000,
                                         "events_per_user": 20, "seed": 0},
                                train=TrainConfig(epochs=1), policy=PolicyConfig(steps=50),
                                eval=EvalConfig(k=10, max_events=200)), run)
        results: dict[str, list[dict[str, Any]]] = {"max_batch_1": [], "max_batch_32": []}
        for _ in range(args.rounds):
            for name, batch in (("max_batch_1", 1), ("max_batch_32", 32)):
                results[name].append(bench_serve(run, requests_c1=args.requests_c1,
                                                 requests_c50=args.requests_c50,
                                                 max_batch=batch))
    one, batched = _summary(results["max_batch_1"]), _summary(results["max_batch_32"])
    print(json.dumps({
        "max_batch_1": one, "max_batch_32": batched,
        "c50_requests_per_s_ratio": batched["c50_requests_per_s"] / one["c50_requests_per_s"],
        "c1_p99_ratio": batched["c1_p99_ms"] / one["c1_p99_ms"],
        "targets": {"c1_p99_ms": TARGET_P99_MS_C1, "c50_requests_per_s": TARGET_RPS_C50},
        "met": {"c1_p99": batched["c1_p99_ms"] <= TARGET_P99_MS_C1,
                "c50_requests_per_s": batched["c50_requests_per_s"] >= TARGET_RPS_C50},
    }, indent=2))


if __name__ == "__main__":
    main()
