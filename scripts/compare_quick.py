#!/usr/bin/env python3
"""Run every experiment's quick mode into a folder, or compare two such folders' JSON.

A refactoring that claims "no behaviour change" runs this before and after:

    scripts/compare_quick.py run /tmp/before --src /path/to/old/checkout/src
    scripts/compare_quick.py run /tmp/after
    scripts/compare_quick.py compare /tmp/before /tmp/after

`run` writes OUT/reports/<experiment>/<dataset>.json (a fresh run cache OUT/runs, so every
model is trained by the code under test) and OUT/timings.json (seconds per experiment).
`compare` exits 1 when any report differs, ignoring what cannot repeat across runs: wall
times (keys naming seconds or a rate per second, the fitted time exponents b_*, values
computed from them: IGNORED_IN) and provenance (the code version).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# wall time and provenance: different on every run, not behaviour
IGNORED = re.compile(r"seconds|_per_s$|^b_(epoch|total)$|^code$")
# per experiment, keys computed from wall times: scalability's records are records_per_s
# x seconds (700.0000000000001 one run, 700.0 the next)
IGNORED_IN = {"scalability": {"records"}}


def experiments(python: str, env: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(name, datasets) of `deepprl experiment list`, as the code under test lists them."""
    out = subprocess.run([python, "-c", "from deepprl.cli import main; main()",
                          "experiment", "list"], env=env, check=True, capture_output=True,
                         text=True).stdout
    found = []
    for line in out.splitlines():
        match = re.match(r"(\S+)\s.*\[([^\]]*)\]\s*$", line)
        if match:
            found.append((match.group(1), [d.strip() for d in match.group(2).split(",")]))
    if not found:
        raise SystemExit(f"no experiments in the output of `deepprl experiment list`:\n{out}")
    return found


def run(out: Path, src: Path | None, every_dataset: bool, only: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if src is not None:  # the checkout under test comes first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(src.resolve()), env.get("PYTHONPATH", "")])
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for name, datasets in experiments(sys.executable, env):
        if only and name not in only:
            continue
        for dataset in datasets if every_dataset else datasets[:1]:
            started = time.perf_counter()
            cmd = [sys.executable, "-c", "from deepprl.cli import main; main()", "experiment",
                   name, "--dataset", dataset, "--quick", "--out", str(out / "reports"),
                   "--runs", str(out / "runs")]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            timings[f"{name}/{dataset}"] = seconds
            status = "ok" if done.returncode == 0 else f"FAILED ({done.returncode})"
            print(f"{name:12s} {dataset:24s} {seconds:7.1f} s  {status}", flush=True)
            if done.returncode != 0:
                print(done.stderr[-4000:], file=sys.stderr)
    timings["total"] = sum(timings.values())
    print(f"total {timings['total']:.1f} s")
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")


def differences(a: Any, b: Any, path: str = "", skip: frozenset[str] = frozenset()
                ) -> list[str]:
    """Where two JSON values differ (exactly), ignoring IGNORED keys and `skip` (top-level
    keys)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            if IGNORED.search(key) or (not path and key in skip):
                continue
            if key not in a or key not in b:
                found.append(f"{path}/{key}: only in {'after' if key in b else 'before'}")
            else:
                found += differences(a[key], b[key], f"{path}/{key}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def compare(before: Path, after: Path) -> int:
    files = sorted({p.relative_to(root / "reports") for root in (before, after)
                    for p in (root / "reports").glob("*/*.json")})
    if not files:
        raise SystemExit(f"no reports under {before}/reports or {after}/reports")
    failed = 0
    for rel in files:
        a, b = before / "reports" / rel, after / "reports" / rel
        if not (a.exists() and b.exists()):
            print(f"{rel}: only in {'after' if b.exists() else 'before'}")
            failed += 1
            continue
        skip = frozenset(IGNORED_IN.get(rel.parts[0], ()))
        diff = differences(json.loads(a.read_text()), json.loads(b.read_text()), skip=skip)
        print(f"{rel}: {'identical' if not diff else f'{len(diff)} differences'}")
        for line in diff[:20]:
            print(f"    {line}")
        failed += bool(diff)
    print(f"{len(files) - failed} of {len(files)} reports identical")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run every experiment's quick mode into OUT")
    r.add_argument("out", type=Path)
    r.add_argument("--src", type=Path, help="src/ folder of the checkout to run "
                                             "(default: the installed deepprl)")
    r.add_argument("--every-dataset", action="store_true",
                   help="every dataset an experiment applies to, not only its first")
    r.add_argument("--only", nargs="*", default=[], help="these experiments only")
    c = sub.add_parser("compare", help="compare the JSON of two OUT folders")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.src, args.every_dataset, args.only)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
