"""Where does the bandit lose the simulator's gap? A diagnosis of complete simulator runs.

.venv/bin/python benchmarks/bandit_gap.py RUN [RUN ...] [--set policy.weight_decay=0 ...]
One JSON line per run (nothing is written to the run), on the run's test events:
- ceilings: the upper bound ("oracle", ranking by the TRUE objectives and preference),
  ranking the PREDICTED objectives with the true preference w (the best any alpha policy
  can do without hindsight with this predictor), w snapped to the grid (the best the
  grid bandit can do), the best grid alpha per event in hindsight (optimistic), the best
  static grid alpha in hindsight, and the run's learned alpha; "of_gap" expresses each as
  a share of the static -> oracle gap;
- fit: stage 2 relearned with the run's learner (--set overrides it) on the run's
  stage-1 predictor: the steps chosen, the greedy reward on the fitted and the stopping
  events next to the snapped-truth reward on the same events (under- or overfitting);
- inputs: the standardised inputs' mean/std, and a ridge probe of the true preference's
  logit gap log(w1/w2) from the bandit's inputs (state + context), the state only and the
  context only, fitted on the learning users and scored (R^2) on the check users.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import build_policy, load_weighted_run, read_json, run_split
from deepprl.cli.common import apply_settings
from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.simulator import SimulatorValuer
from deepprl.distributed import SINGLE
from deepprl.eval.headroom import grid_rewards
from deepprl.eval.metrics import top_k_reward
from deepprl.eval.preference import (
    grid_headroom,
    grid_on_test,
    nearest_grid_point,
    preference_ceiling,
)
from deepprl.learners import weight_learner
from deepprl.policy.weights import GridBandit, simplex_grid
from deepprl.recommender import Recommender
from deepprl.train.pessimism import stage2_users
from deepprl.train.stage2 import build_trajectories


def _valuer(data: Interactions) -> SimulatorValuer:
    if not isinstance(data.valuer, SimulatorValuer):
        raise ValueError(f"bandit_gap needs a simulator run (its hidden preference); "
                         f"{data.name!r} has none")
    return data.valuer


def ceilings(recommender: Recommender, config: RunConfig, metrics: dict) -> dict[str, Any]:
    data, k = recommender.data, config.eval.k
    split = run_split(data, config)
    test = grid_on_test(recommender, config, split)  # scored once for every figure here
    alpha = torch.from_numpy(recommender.learned_weights(test.events, test.items)).float()
    learned = top_k_reward(test.y_hat, test.reward, test.valid, alpha, k)
    out = {"oracle": metrics["oracle"]["reward"],
           **preference_ceiling(recommender, config, split, test),
           **grid_headroom(recommender, config, split, test),
           "learned": float(learned.mean()), "static_optuna": metrics["static"]["reward"]}
    base, top = out["static_optuna"], out["oracle"]
    out["of_gap"] = {key: (v - base) / (top - base) for key, v in out.items()
                     if isinstance(v, float)}
    return out


def fit_and_inputs(recommender: Recommender, config: RunConfig) -> dict[str, Any]:
    """Relearn stage 2 on the run's predictor; the fit's log against the snapped truth on
    the same events, and what the bandit's inputs carry about the true preference."""
    data = recommender.data
    split = run_split(data, config)
    torch.manual_seed(config.seed)
    fresh = Recommender(recommender.model, build_policy(config, recommender.model, data),
                        data)
    log, _, check = weight_learner(config.policy.algorithm).fit()(
        fresh, data, split, config, progress=None, world=SINGLE)
    learn, held = stage2_users(data, split, config)
    out: dict[str, Any] = {"check": {k: check.get(k) for k in ("gain", "gain_lower_bound",
                                                               "users", "folds")}
                           if check else None}
    search = [r for r in log if "refit" not in r]
    out["fit"] = {"chosen_steps": log[-1].get("chosen_steps"),
                  "search": [{k: round(r[k], 4) for k in ("step", "fit_reward", "stop_reward")}
                             for r in search[:: max(1, len(search) // 8)]],
                  "refit_last": {k: log[-1].get(k) for k in ("step", "fit_reward")}}
    env = build_trajectories(fresh, data, learn, config.policy, k=config.eval.k,
                             max_candidates=config.train.max_candidates, seed=config.seed)
    events = np.flatnonzero(learn)[env.sampled.numpy()]
    grid = simplex_grid(data.n_objectives, config.policy.grid_steps)
    rewards = grid_rewards(env.y_hat, env.reward, env.valid, grid, config.eval.k)
    truth = torch.from_numpy(_valuer(data).oracle_weights(data, events))
    later = torch.from_numpy(split.valid[events])
    snap = rewards.gather(1, nearest_grid_point(truth, grid)[:, None]).squeeze(1)
    out["fit"]["snapped_truth_reward"] = {"fit_events": float(snap[~later].mean()),
                                          "stop_events": float(snap[later].mean())}
    out["fit"]["hindsight_reward"] = {"fit_events": float(rewards.max(1).values[~later].mean()),
                                      "stop_events": float(rewards.max(1).values[later].mean())}
    policy = fresh.policy
    if isinstance(policy, GridBandit):
        x = policy.inputs(policy.joined(env.state[env.sampled], env.context[env.sampled]))
        out["inputs"] = {"dims": x.shape[1], "mean_abs_mean": float(x.mean(0).abs().mean()),
                         "std_min": float(x.std(0).min()), "std_max": float(x.std(0).max())}
    out["probe_r2"] = probes(recommender, data, learn, held, config)
    return out


def probes(recommender: Recommender, data: Interactions, learn: np.ndarray,
           held: np.ndarray, config: RunConfig) -> dict[str, float]:
    """R^2 on the held users of ridge probes of log(w1 / w2) from the inputs."""
    def parts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.flatnonzero(mask)
        truth = _valuer(data).oracle_weights(data, rows)
        return (recommender.states(rows), data.context[rows],
                np.log(truth[:, 0] / truth[:, 1]))

    (s_a, c_a, y_a), (s_b, c_b, y_b) = parts(learn), parts(held)
    out = {}
    for name, (xa, xb) in {"state_and_context": (np.c_[s_a, c_a], np.c_[s_b, c_b]),
                           "state": (s_a, s_b), "context": (c_a, c_b)}.items():
        mu, sd = xa.mean(0), xa.std(0) + 1e-6
        za, zb = (xa - mu) / sd, (xb - mu) / sd
        za, zb = np.c_[za, np.ones(len(za))], np.c_[zb, np.ones(len(zb))]
        coef = np.linalg.solve(za.T @ za + 1.0 * np.eye(za.shape[1]), za.T @ y_a)
        resid = y_b - zb @ coef
        out[name] = float(1 - resid.var() / y_b.var())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--no-fit", action="store_true", help="ceilings only")
    args = parser.parse_args()
    for run in args.runs:
        config, recommender = load_weighted_run(run)
        metrics = read_json(run / "metrics.json")
        row: dict[str, Any] = {"run": str(run), "ceilings": ceilings(recommender, config,
                                                                     metrics)}
        if not args.no_fit:
            row.update(fit_and_inputs(recommender, apply_settings(config, args.settings)))
        print(json.dumps(row, default=float), flush=True)


if __name__ == "__main__":
    main()
