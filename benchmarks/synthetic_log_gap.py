"""Issue 15's logged-data acceptance figure: the share of the static-to-upper-bound gap the
learned weights close on deepprl.data.synthetic_log, trained through the generic loader with
default settings (plus any --set).

.venv/bin/python benchmarks/synthetic_log_gap.py --seeds 0 1 2 [--users 40 --events 60]
    [--set policy.algorithm=dqn] [--out runs/synthetic-gap]
Prints one JSON line per seed (static, oracle, learned rewards on the test events and the
closed share), then the median share."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from deepprl.cli.common import run_config
from deepprl.data.synthetic_log import PreferenceLog, write_preference_log
from deepprl.train.run import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--users", type=int, default=PreferenceLog.n_users)
    parser.add_argument("--events", type=int, default=PreferenceLog.events_per_user)
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--out", default="runs/synthetic-gap")
    args = parser.parse_args()
    shares = []
    for seed in args.seeds:
        start = time.perf_counter()
        folder = Path(args.out) / f"u{args.users}-e{args.events}-s{seed}"
        data, mapping = write_preference_log(folder, PreferenceLog(
            n_users=args.users, events_per_user=args.events, seed=seed))
        config = run_config(None, data, mapping, seed, None, None, None,
                            settings=args.settings)
        m = train_run(config, folder / "run", overwrite=True)
        static, oracle, learned = (m[r]["reward"] for r in ("static", "oracle", "learned"))
        share = (learned - static) / (oracle - static)
        shares.append(share)
        print(json.dumps({"seed": seed, "users": args.users, "events": args.events,
                          "settings": args.settings, "static": static, "oracle": oracle,
                          "learned": learned, "closed_share": share,
                          "policy_check": m.get("policy_check"),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    print(json.dumps({"median_closed_share": statistics.median(shares),
                      "shares": shares}))


if __name__ == "__main__":
    main()
