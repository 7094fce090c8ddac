"""Static weights tuned by Bayesian optimisation on validation events (paper §5.2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_items
from deepprl.data.splits import Split
from deepprl.eval.metrics import top_k_reward, top_k_reward_of
from deepprl.parallel import map_tasks, session
from deepprl.ranking import Ranker


@dataclass(frozen=True, eq=False)
class ValidationSet:
    """Validation events with more than k candidates (each user's validation-period items)."""

    events: np.ndarray  # [E]
    items: np.ndarray  # [E, C]
    reward: torch.Tensor  # [E, C] true reward, 0 where invalid
    valid: torch.Tensor  # [E, C] bool


def validation_set(data: Interactions, split: Split, *, k: int, seed: int,
                   max_events: int = 5000) -> ValidationSet:
    events = np.flatnonzero(split.valid)
    if len(events) == 0:
        raise ValueError("static weights are tuned on validation events, and the split has "
                         "none: set train.valid_fraction > 0")
    items = candidate_items(data, events, split.valid)
    _, reward = data.candidate_values(events, items)
    valid = (items > 0) & np.isfinite(reward)
    keep = valid.sum(1) > k
    if not keep.any():
        raise ValueError(f"no validation event has more than k={k} candidates")
    events, items, reward, valid = events[keep], items[keep], reward[keep], valid[keep]
    if len(events) > max_events:
        pick = np.sort(np.random.default_rng([seed, 41]).choice(len(events), max_events,
                                                                replace=False))
        events, items, reward, valid = events[pick], items[pick], reward[pick], valid[pick]
    return ValidationSet(events=events, items=items,
                         reward=torch.from_numpy(np.nan_to_num(reward)),
                         valid=torch.from_numpy(valid))


def tune_weights(mean_reward: Callable[[np.ndarray], float], n_objectives: int, *,
                 trials: int, seed: int, parallel: int = 1, executor: str = "sequential",
                 address: str | None = None) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Maximise mean_reward(alpha) over the simplex with Optuna's TPE (seeded). The first
    trials are equal weights and the K exact vertices, which TPE's continuous draws never
    hit and which are often best (one objective alone; a saturated predictor's reward can
    jump there: docs/model.md). Returns (best alpha [K], one record per trial).

    parallel > 1 asks TPE for that many trials at once and scores them with
    deepprl.parallel.map_tasks on `executor` (e.g. "ray", at `address`); each round's
    trials then share what TPE knew before the round, so results differ from parallel = 1,
    which is the reference. Scoring a trial on a precomputed predictor takes milliseconds,
    so this pays only when mean_reward is expensive (e.g. it re-scores a large model)."""
    import optuna  # here: a second of import that `deepprl evaluate` need not pay

    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({f"w{j}": 1.0 for j in range(n_objectives)})
    for vertex in range(n_objectives):
        study.enqueue_trial({f"w{j}": float(j == vertex) for j in range(n_objectives)})
    names = [f"w{j}" for j in range(n_objectives)]
    if parallel == 1 and executor == "sequential":
        study.optimize(lambda t: mean_reward(_to_simplex([t.suggest_float(n, 0.0, 1.0)
                                                          for n in names])),
                       n_trials=trials)
    else:
        score = functools.partial(_score, mean_reward)
        done = 0
        with session(executor, address):  # one Ray for all rounds
            while done < trials:
                asked = [study.ask() for _ in range(min(parallel, trials - done))]
                alphas = [_to_simplex([t.suggest_float(n, 0.0, 1.0) for n in names])
                          for t in asked]
                values = map_tasks(score, [{"alpha": a} for a in alphas], executor=executor,
                                   address=address)
                for trial, value in zip(asked, values, strict=True):
                    study.tell(trial, value)
                done += len(asked)
    best = _to_simplex([study.best_params[n] for n in names])
    log = [{"trial": t.number, "valid_reward": float(t.value or 0.0)} for t in study.trials]
    return best, log


def _score(mean_reward: Callable[[np.ndarray], float], alpha: np.ndarray) -> float:
    return float(mean_reward(alpha))


def tune_static_weights(ranker: Ranker, data: Interactions, split: Split, *,
                        k: int, trials: int, seed: int, max_events: int = 5000
                        ) -> tuple[np.ndarray, list[dict[str, float]]]:
    """One alpha for everyone on the ranker's predictor (ranking by alpha . y_hat)."""
    vs = validation_set(data, split, k=k, seed=seed, max_events=max_events)
    values = ranker.objective_scores(vs.events, vs.items)
    if values is None:
        raise ValueError("static weights are tuned on a predictor's per-objective scores; "
                         "this model has none")
    y_hat = torch.from_numpy(values)

    def mean_reward(alpha: np.ndarray) -> float:
        a = torch.from_numpy(alpha.astype(np.float32)).expand(len(vs.events), -1)
        return float(top_k_reward(y_hat, vs.reward, vs.valid, a, k).mean())

    return tune_weights(mean_reward, data.n_objectives, trials=trials, seed=seed)


def top_k_mean_reward(scores: np.ndarray, vs: ValidationSet, k: int) -> float:
    """Mean true reward of the top-k by `scores` [E, C] on a validation set."""
    return float(top_k_reward_of(torch.from_numpy(scores.astype(np.float32)), vs.reward,
                                 vs.valid, k).mean())


def _to_simplex(raw: list[float]) -> np.ndarray:
    x = np.asarray(raw, dtype=np.float64)
    return x / x.sum() if x.sum() > 0 else np.full(len(x), 1.0 / len(x))
