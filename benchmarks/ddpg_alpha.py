"""DDPG on the simulator: reward (learned vs static vs oracle), how well its alpha follows
the true per-event preference, and the actor's spread across events layer by layer.

.venv/bin/python benchmarks/ddpg_alpha.py [--seeds 0 1 2 3 4] [--out runs/ddpg-alpha]
    [--dataset simulator] [--set policy.steps=3000 ...] [--reuse]
Each seed s trains DeepPRL with policy.algorithm = ddpg (explicit: another learner may be
the default) on the simulator world of seed s and prints one JSON line; a summary last.
Runs on any checkout of deepprl (it uses only load_run, run_split and Recommender), so the
same script measures an older version: /work/main/.venv/bin/python benchmarks/ddpg_alpha.py.

alpha_corr: Pearson correlation over test events of the learned alpha_1 with the true
preference w_1 (the simulator knows it; K = 2). within_user_corr: the median over users
whose true w_1 moves by >= 0.1 over their test events of the same correlation within the
user (context is used). spread_init / spread_trained: mean over units of the standard
deviation across test events of the actor's input (standardised where the actor does),
of each hidden layer's output and of its logits, for a fresh actor (the run's seed) and
the trained one. Other datasets: rewards and spreads only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import build_policy, load_run, run_split
from deepprl.config import RunConfig
from deepprl.train.run import train_run


def _set(config: RunConfig, assignments: list[str]) -> RunConfig:
    """section.field=value assignments (numbers or strings) on top of `config`."""
    for item in assignments:
        key, _, raw = item.partition("=")
        section, _, name = key.partition(".")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        config = dataclasses.replace(config, **{section: dataclasses.replace(
            getattr(config, section), **{name: value})})
    return config


@torch.no_grad()
def layer_spread(actor: torch.nn.Module, state: torch.Tensor, context: torch.Tensor
                 ) -> list[float]:
    """Mean std across events of the actor's input, each hidden layer, and the logits."""
    if hasattr(actor, "layer_outputs"):
        return [float(x.std(0).mean()) for x in actor.layer_outputs(state, context)]
    # an older actor (sigmoid layers, raw inputs)
    x = torch.cat([state, context], dim=-1) if actor.use_context else state
    spreads = [float(x.std(0).mean())]
    for module in actor.net:
        x = module(x)
        if isinstance(module, torch.nn.Sigmoid):
            spreads.append(float(x.std(0).mean()))
    return [*spreads, float(x.std(0).mean())]


def _truth(data: Any, events: np.ndarray, alpha: np.ndarray) -> dict[str, Any]:
    """Correlations of alpha_1 with the simulator's true preference w_1."""
    truth = data.valuer.oracle_weights(data, events)
    within = []
    for user in np.unique(data.user[events]):
        mine = data.user[events] == user
        if np.ptp(truth[mine, 0]) >= 0.1 and np.ptp(alpha[mine, 0]) > 0:
            within.append(float(np.corrcoef(alpha[mine, 0], truth[mine, 0])[0, 1]))
    return {"alpha_corr": round(float(np.corrcoef(alpha[:, 0], truth[:, 0])[0, 1]), 4)
            if np.ptp(alpha[:, 0]) > 0 else 0.0,
            "within_user_corr": round(statistics.median(within), 4) if within else None,
            "moving_users": len(within)}


def measure(run: str) -> dict[str, Any]:
    """alpha vs the true preference (simulator) and the layer spread on the run's test
    events, of the trained actor and of a fresh one (the run's seed; the trained one's
    input statistics where it has them)."""
    config, recommender = load_run(run)
    data = recommender.data
    events = np.flatnonzero(run_split(data, config).test)
    state = recommender.states(events)
    context = data.context[events]
    alpha = recommender.weights(state, context)
    actor = recommender.policy
    torch.manual_seed(config.seed)
    fresh = build_policy(config, recommender.model, data)
    if hasattr(actor, "inputs"):
        fresh.inputs.load_state_dict(actor.inputs.state_dict())
    s, c = torch.from_numpy(state), torch.from_numpy(context)
    out = {"alpha_mean": round(float(alpha[:, 0].mean()), 4),
           "alpha_std": round(float(alpha[:, 0].std()), 4),
           "near_vertex": round(float((alpha.max(1) > 0.999).mean()), 4),
           "spread_init": [round(v, 5) for v in layer_spread(fresh, s, c)],
           "spread_trained": [round(v, 5) for v in layer_spread(actor, s, c)]}
    if hasattr(data.valuer, "oracle_weights"):
        out.update(_truth(data, events, alpha))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="runs/ddpg-alpha")
    parser.add_argument("--dataset", default="simulator")
    parser.add_argument("--set", dest="assignments", nargs="*", default=[])
    parser.add_argument("--reuse", action="store_true", help="measure runs already there")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        dataset: dict[str, Any] = {"name": args.dataset}
        if args.dataset == "simulator":  # each seed is another simulated world too
            dataset["seed"] = seed
        config = RunConfig(dataset=dataset, seed=seed)
        config = _set(config, ["policy.algorithm=ddpg", *args.assignments])
        out = f"{args.out}/seed{seed}"
        m = (json.loads(Path(out, "metrics.json").read_text(encoding="utf-8"))
             if args.reuse else train_run(config, out, overwrite=True))
        row: dict[str, Any] = {"seed": seed, **{f"{k}_reward": round(m[k]["reward"], 4)
                                                for k in ("learned", "static", "oracle")}}
        gap = row["oracle_reward"] - row["static_reward"]
        row["gap_closed"] = round((row["learned_reward"] - row["static_reward"]) / gap, 3) \
            if gap > 0 else None
        row.update(measure(out))
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "seed" and isinstance(rows[0][k], float)]
    print(json.dumps({"seeds": len(rows), "median": {
        k: statistics.median(r[k] for r in rows if r[k] is not None) for k in keys}}))


if __name__ == "__main__":
    main()
