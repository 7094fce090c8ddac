"""Static weights tuned by Bayesian optimisation on validation events (paper §5.2)."""

from __future__ import annotations

import numpy as np
import optuna
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_items
from deepprl.data.splits import Split
from deepprl.eval.metrics import top_k_reward
from deepprl.recommender import Recommender


def tune_static_weights(recommender: Recommender, data: Interactions, split: Split, *,
                        k: int, trials: int, seed: int, max_events: int = 5000
                        ) -> tuple[np.ndarray, list[dict[str, float]]]:
    """One alpha for everyone, maximising the mean top-k reward on the validation events
    (candidates: each user's validation-period items). TPE, seeded; the first trial is
    equal weights. Returns (alpha [K], one record per trial)."""
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
    y_hat = torch.from_numpy(recommender.score_events(events, items).y_hat)
    true_reward = torch.from_numpy(np.nan_to_num(reward))
    mask = torch.from_numpy(valid)
    K = data.n_objectives

    def mean_reward(alpha: np.ndarray) -> float:
        a = torch.from_numpy(alpha.astype(np.float32)).expand(len(events), -1)
        return float(top_k_reward(y_hat, true_reward, mask, a, k).mean())

    def objective(trial: optuna.Trial) -> float:
        return mean_reward(_to_simplex([trial.suggest_float(f"w{j}", 0.0, 1.0)
                                        for j in range(K)]))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({f"w{j}": 1.0 for j in range(K)})
    study.optimize(objective, n_trials=trials)
    best = _to_simplex([study.best_params[f"w{j}"] for j in range(K)])
    log = [{"trial": t.number, "valid_reward": float(t.value or 0.0)} for t in study.trials]
    return best, log


def _to_simplex(raw: list[float]) -> np.ndarray:
    x = np.asarray(raw, dtype=np.float64)
    return x / x.sum() if x.sum() > 0 else np.full(len(x), 1.0 / len(x))
