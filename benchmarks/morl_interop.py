"""morl-baselines' CAPQL beside DeepPRL on deepprl/Simulator-v0 and deepprl/MovieLensSim-v0:
Pareto fronts and hypervolumes by morl-baselines' indicators and by ours, which must agree.

.venv/bin/python benchmarks/morl_interop.py [--envs simulator movielens] [--capql-steps 3000]
       [--episodes 10] [--weight-steps 10] [--out runs/morl-interop] [--seed 0] [--reuse]
Needs the extra: pip install 'deepprl[morl]'. One JSON line per environment.

Methods (each point: deepprl.envs.morl.mean_reward over --episodes episodes, reset(seed=0..E-1),
the same users for every method):
- capql: CAPQL trained --capql-steps environment steps on the environment itself (flat,
  normalised observation; action: the item scores), greedy at each weight of the simplex
  grid of step 1/--weight-steps: one point per weight;
- deepprl: DeepPRL trained offline on the log of the environment's world (simulator: world
  seed 0, 80 logged items per user, with examples/environment.py's budget, 4 epochs and
  500 policy steps, and the long-term study's 10 static-weight trials; movielens-sim: the
  whole log by the default recipe, as the experiments' runs), acting
  through RecommenderAgent with the weights it serves (learned, or the pessimism check's
  static fallback: "served" in the output): one point;
- deepprl_static: the same model's predictor with each grid weight as static alpha;
- random: uniform random scores; oracle_sweep: the true objectives weighted by each grid
  weight; oracle_utility: each user's true utility (references, not competitors).
Reference points, shared by every method of an environment: the reward space's lower
corner (0, ..., 0) and the component-wise minimum of every point of the environment (the
long-term study's convention). compare_indicators raises if the libraries disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import deepprl  # noqa: F401  (registers the environments)
from deepprl.artifacts import load_run
from deepprl.config import PolicyConfig, RunConfig, TrainConfig
from deepprl.envs.agents import RecommenderAgent
from deepprl.envs.morl import (
    CapqlConfig,
    capql_points,
    compare_indicators,
    mean_reward,
    morl_env,
    simplex_weights,
    train_capql,
)
from deepprl.rundir import read_marker
from deepprl.train.run import train_run

ENVS = {  # id, DeepPRL's training config
    "simulator": ("deepprl/Simulator-v0", RunConfig(
        dataset={"name": "simulator", "events_per_user": 80, "seed": 0},
        train=TrainConfig(epochs=4), policy=PolicyConfig(steps=500, static_trials=10))),
    "movielens": ("deepprl/MovieLensSim-v0", RunConfig(dataset={"name": "movielens-sim"})),
}


def deepprl_run(config: RunConfig, out: Path, seed: int, reuse: bool) -> float:
    """Train DeepPRL offline unless --reuse finds the run complete; seconds."""
    if reuse and read_marker(out) is not None:
        return 0.0
    start = time.perf_counter()
    train_run(dataclasses.replace(config, seed=seed), out)
    return time.perf_counter() - start


def reference_points(env: gym.Env, run: Path, weights: np.ndarray, seeds: list[int],
                     seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(points [N, K], utilities [N]) of DeepPRL, its static sweep, random and the oracles."""
    base = env.unwrapped
    _, ranker = load_run(run)
    rng = np.random.default_rng(seed)
    n_items = base.action_space.shape[0]

    def sweep(act_for: Any) -> tuple[np.ndarray, np.ndarray]:
        results = [mean_reward(env, act_for(w), seeds) for w in weights]
        return np.stack([r for r, _ in results]), np.array([u for _, u in results])

    def one(act: Any) -> tuple[np.ndarray, np.ndarray]:
        reward, utility = mean_reward(env, act, seeds)
        return reward[None], np.array([utility])

    def static(w: np.ndarray) -> Any:
        fixed = RecommenderAgent(ranker, w)
        return lambda obs: fixed(base)

    agent = RecommenderAgent(ranker)
    return {
        "deepprl": one(lambda obs: agent(base)),
        "deepprl_static": sweep(static),
        "random": one(lambda obs: rng.uniform(-1, 1, n_items).astype(np.float32)),
        "oracle_sweep": sweep(lambda w: lambda obs: base.true_values()[0] @ w),
        "oracle_utility": one(lambda obs: base.true_values()[1]),
    }


def environment(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One environment's figures (the JSON line)."""
    env_id, config = ENVS[name]
    weights = simplex_weights(2, args.weight_steps)
    seeds = list(range(args.episodes))
    run = args.out / name / "deepprl"
    deepprl_seconds = deepprl_run(config, run, args.seed, args.reuse)
    served = json.loads((run / "served.json").read_text(encoding="utf-8"))
    points = reference_points(gym.make(env_id, disable_env_checker=True), run, weights, seeds,
                              args.seed)
    start = time.perf_counter()
    env = morl_env(env_id)
    agent = train_capql(env, CapqlConfig(steps=args.capql_steps, seed=args.seed))
    capql_seconds = time.perf_counter() - start
    points["capql"] = capql_points(agent, env, weights, seeds)
    everything = np.concatenate([p for p, _ in points.values()])
    refs = {"zero": np.zeros(2), "min": everything.min(0)}
    methods = {}
    for method, (pts, utilities) in points.items():
        figures = {ref: compare_indicators(pts, value) for ref, value in refs.items()}
        methods[method] = {
            "points": pts.round(4).tolist(), "utility": utilities.round(4).tolist(),
            "front": figures["zero"]["front"],
            **{f"hypervolume_{ref}": f["hypervolume"] for ref, f in figures.items()},
            **{f"hypervolume_{ref}_morl_baselines": f["hypervolume_morl_baselines"]
               for ref, f in figures.items()}}
    return {"env": env_id, "objectives": list(env.unwrapped.objective_names),
            "capql_steps": args.capql_steps, "episodes": args.episodes,
            "weights": len(weights), "seed": args.seed, "ref_min": refs["min"].tolist(),
            "capql_train_seconds": round(capql_seconds, 1),
            "deepprl_train_seconds": round(deepprl_seconds, 1),
            "deepprl_served": served.get("served"), "methods": methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", choices=sorted(ENVS), default=sorted(ENVS)[::-1])
    parser.add_argument("--capql-steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--weight-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/morl-interop"))
    parser.add_argument("--reuse", action="store_true",
                        help="act with DeepPRL runs already complete in --out")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a shared two-core machine
    for name in args.envs:
        print(json.dumps(environment(name, args)), flush=True)


if __name__ == "__main__":
    main()
