"""Per-event results and Pareto frontiers of trained runs (paper §5.4, DESIGN §3).

For a run, on its test events (the offline protocol of deepprl.eval.evaluator):
- its own ranking: the top-K's mean true objectives and reward, per event (for paired tests);
- the static-weight sweep (paper §5.4): the run's predictor (or an item-level baseline's
  static weights) ranked with every alpha of a simplex grid (alpha_1 in {0, 0.1, ..., 1}
  for K = 2); single-objective methods have no sweep;
- the oracle frontier: the same sweep ranking by the TRUE objective values (on the
  simulator the truth is fully known; on a log it is the logged value of each candidate,
  an upper bound of what a ranking of these candidates can reach).
Hypervolumes use one reference point per dataset: for each objective, the worst top-K
mean any ranking can reach (rank by that objective ascending), over all eligible test
events. Every ranking's point lies above or on it, so the reference never hides a method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import load_run, run_split
from deepprl.config import RunConfig
from deepprl.eval.evaluator import EvalSet, build_eval_set, describe
from deepprl.eval.metrics import mean_of_top
from deepprl.eval.pareto import dominated_hull_volume, hypervolume
from deepprl.io import atomic_path
from deepprl.policy.weights import simplex_grid
from deepprl.ranking import Ranker, top_k

GRID_STEPS = 10


def weight_grid(n_objectives: int) -> np.ndarray:
    """[A, K]: alpha_1 in {0, 0.1, ..., 1} for K = 2; the simplex grid of step 0.1 beyond."""
    return simplex_grid(n_objectives, GRID_STEPS).numpy().astype(np.float64)


@dataclass(frozen=True)
class RunResult:
    """One trained run evaluated on its test events."""

    model: str
    seed: int
    events: np.ndarray  # [E] event ids (the same for every run of a seed)
    objectives: np.ndarray  # [E, K] top-K mean true objectives of the run's ranking
    reward: np.ndarray  # [E] top-K mean true reward
    sweep: np.ndarray | None  # [A, K + 1] mean objectives and reward per grid alpha
    mean_weights: np.ndarray | None  # [K] mean alpha of a weighted run's own ranking
    oracle_sweep: np.ndarray  # [A, K + 1] the same sweep ranking by the true objectives
    oracle: np.ndarray  # [K + 1] ranking by the true reward
    ref: np.ndarray  # [K] the dataset's hypervolume reference point
    protocol: dict[str, Any]  # test events, evaluated, excluded, mean candidates

    @property
    def point(self) -> np.ndarray:
        """[K + 1]: mean objectives and reward."""
        return np.append(self.objectives.mean(0), self.reward.mean())


def top_values(eval_set: EvalSet, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-event top-k mean true objectives [E, K] and reward [E] of ranking by scores."""
    idx = top_k(torch.from_numpy(scores.astype(np.float32)),
                torch.from_numpy(eval_set.valid), k).numpy()
    return mean_of_top(eval_set.objectives, idx), mean_of_top(eval_set.reward, idx)


def mean_point(eval_set: EvalSet, scores: np.ndarray, k: int) -> np.ndarray:
    """[K + 1]: the top-k mean true objectives and reward of ranking by scores [E, C]."""
    objectives, reward = top_values(eval_set, scores, k)
    return np.append(objectives.mean(0), reward.mean())


CACHE = "experiment-eval.npz"


def evaluate_run(path: Path) -> RunResult:
    """Load a run and evaluate its ranking and its static-weight sweep; cached in the run
    directory (recomputed when the run is newer than the cache)."""
    cache = path / CACHE
    if cache.is_file() and cache.stat().st_mtime_ns >= (path / "metrics.json").stat().st_mtime_ns:
        return _load_result(cache)
    result = _evaluate(path)
    _save_result(result, cache)
    return result


_ARRAYS = ("events", "objectives", "reward", "sweep", "mean_weights", "oracle_sweep",
           "oracle", "ref")


def _save_result(result: RunResult, cache: Path) -> None:
    arrays = {name: getattr(result, name) for name in _ARRAYS
              if getattr(result, name) is not None}
    meta = json.dumps({"model": result.model, "seed": result.seed,
                       "protocol": result.protocol})
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:  # a file: savez adds no suffix
        np.savez(handle, meta=np.array(meta), **arrays)


def _load_result(cache: Path) -> RunResult:
    with np.load(cache, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays: dict[str, Any] = {name: (z[name] if name in z.files else None)
                                  for name in _ARRAYS}
    return RunResult(model=meta["model"], seed=meta["seed"], protocol=meta["protocol"],
                     **arrays)


def _evaluate(path: Path) -> RunResult:
    config, ranker = load_run(path)
    eval_set = eval_set_of(config, ranker)
    events, items = eval_set.events, eval_set.items
    k, grid = config.eval.k, weight_grid(ranker.data.n_objectives)
    scores = ranker.scores(events, items)
    alpha = ranker.learned_weights(events, items)
    sweep = None
    # a weighted model's predictor, or an item-level baseline's static weights, swept
    if alpha is not None or "weights" in config.baseline:
        sweep = np.stack([mean_point(eval_set, _static_scores(ranker, eval_set, a), k)
                          for a in grid])
    objectives, reward = top_values(eval_set, scores, k)
    return RunResult(model=config.name, seed=config.seed, events=events,
                     objectives=objectives, reward=reward, sweep=sweep,
                     mean_weights=None if alpha is None else alpha.mean(0),
                     oracle_sweep=oracle_sweep(eval_set, k),
                     oracle=oracle_point(eval_set, k), ref=reference_point(config, ranker),
                     protocol=describe(eval_set, k))


def _static_scores(ranker: Ranker, eval_set: EvalSet, alpha: np.ndarray) -> np.ndarray:
    scores = ranker.static_scores(eval_set.events, eval_set.items, alpha)
    if scores is None:
        raise ValueError("a static-weight sweep of a model without static weights")
    return scores


def eval_set_of(config: RunConfig, ranker: Ranker) -> EvalSet:
    return build_eval_set(ranker.data, run_split(ranker.data, config), k=config.eval.k,
                          max_events=config.eval.max_events, seed=config.seed)


def oracle_sweep(eval_set: EvalSet, k: int) -> np.ndarray:
    """[A, K + 1]: rank by alpha . (true objectives) for every grid alpha."""
    grid = weight_grid(eval_set.objectives.shape[-1])
    truth = np.nan_to_num(eval_set.objectives)
    return np.stack([mean_point(eval_set, truth @ a, k) for a in grid])


def oracle_point(eval_set: EvalSet, k: int) -> np.ndarray:
    """[K + 1]: rank by the true reward (each user's own trade-off)."""
    return mean_point(eval_set, np.nan_to_num(eval_set.reward, nan=-np.inf), k)


def reference_point(config: RunConfig, ranker: Ranker) -> np.ndarray:
    """[K]: per objective, the worst top-K mean reachable, over every eligible test event."""
    full = build_eval_set(ranker.data, run_split(ranker.data, config), k=config.eval.k)
    truth = np.nan_to_num(full.objectives, nan=np.inf)
    return np.array([top_values(full, -truth[..., j], config.eval.k)[0][:, j].mean()
                     for j in range(truth.shape[-1])])


def front_volumes(points: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Hypervolume and convex-hull volume of a set of objective points [N, K]."""
    return {"hypervolume": hypervolume(points, ref),
            "hull_volume": dominated_hull_volume(points, ref)}
