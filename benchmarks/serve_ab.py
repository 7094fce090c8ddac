"""Two source trees' serving speed, alternated in one run so that machine noise hits both
alike: `benchmarks/serve_inprocess.py` (in-process top-10 among 2,000 candidates) and
`deepprl bench serve`'s measurement (HTTP /recommend at concurrency 1 and 50, this
checkout's client, the server process from one tree's src/ in turn). Prints one JSON
object: every round, medians, ratios.

    git archive BASE src | tar -x -C /tmp/base
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_ab.py --base /tmp/base/src \\
        --run RUN [--rounds 3] [--what inprocess,http]

RUN: the 2,000-item simulator run (`benchmarks/serve_inprocess.py` trains one without
--run; any run with >= 2,000 items works). --new defaults to this checkout's src/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _json_of(command: list[str], src: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out[out.index("{"):]))


def _inprocess(src: Path, run: Path, requests: int) -> dict[str, float]:
    got = _json_of([sys.executable, str(HERE / "serve_inprocess.py"), "--run", str(run),
                    "--rounds", "3", "--requests", str(requests)], src)
    return {f"{path}_{key}": got[path][key]
            for path in ("recommender", "service", "recommender_uncached_state")
            if path in got for key in ("p50_ms", "p99_ms")}


def _http(src: Path, run: Path, requests: int) -> dict[str, float]:
    # the client (this checkout's deepprl.serve.bench) is the same for both sides; the
    # server it starts, `python -m deepprl serve`, inherits PYTHONPATH: the tree measured
    client = (f"import json, sys; sys.path.insert(0, {str(HERE.parent / 'src')!r}); "
              f"from deepprl.serve.bench import bench_serve; "
              f"print(json.dumps(bench_serve({str(run)!r}, requests_c1={requests}, "
              f"requests_c50={5 * requests})))")
    got = _json_of([sys.executable, "-c", client], src)
    return {"c1_p50_ms": got["concurrency_1"]["p50_ms"],
            "c1_p99_ms": got["concurrency_1"]["p99_ms"],
            "c50_p99_ms": got["concurrency_50"]["p99_ms"],
            "c50_requests_per_s": got["concurrency_50"]["requests_per_s"],
            "c1_server_cpu_ms": got["concurrency_1"]["server_cpu_ms_per_request"],
            "c50_server_cpu_ms": got["concurrency_50"]["server_cpu_ms_per_request"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the old tree's src/")
    parser.add_argument("--new", type=Path, default=HERE.parent / "src")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--what", default="inprocess,http")
    parser.add_argument("--requests", type=int, default=300,
                        help="timed calls per in-process round / HTTP c1 (c50: 5x)")
    args = parser.parse_args()
    benches = {"inprocess": _inprocess, "http": _http}
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {}
    for what in args.what.split(","):
        rounds[what] = {"base": [], "new": []}
        for _ in range(args.rounds):
            for side, src in (("base", args.base), ("new", args.new)):
                rounds[what][side].append(benches[what](src, args.run, args.requests))
    result: dict[str, Any] = {"rounds": rounds, "median": {}, "new_over_base": {}}
    for what, sides in rounds.items():
        for side, rows in sides.items():
            result["median"].setdefault(what, {})[side] = {
                key: statistics.median(r[key] for r in rows) for key in rows[0]}
        base, new = result["median"][what]["base"], result["median"][what]["new"]
        result["new_over_base"][what] = {key: round(new[key] / base[key], 3)
                                         for key in base if key in new}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
