"""Pessimism: does the learned weight policy beat one static alpha on users it never saw?

Stage 2 learns on most of the users of its pool (train + validation events) and keeps a
seeded share of them out (stage2_users). After learning, the learned policy and the best
static alpha of the learning users (the best point of a simplex grid that contains the
exact vertices) are compared on the held-out users' events, paired by user
(policy_check). A run serves the learned policy only where the one-sided lower confidence
bound of that gain is above zero (serves); otherwise the static alpha, and says so.

With 20% of a 100-user log held out, 20 users cannot bound a real gain of +0.02 above
zero. Where learning is cheap (the bandit: seconds a fit) the check is cross-fitted
instead (cross_fitted_check): the users are dealt into F folds, the learner is fitted on
F - 1 of them and checked on the last, for each fold in turn, so every stage-2 user is
checked once, by a policy that never saw them; the per-user gains of all folds are pooled
into one paired test, and the policy served is refitted on every user (F + 1 fits).
Anchor: choosing scalarisation weights by a pessimistic bound on the north-star reward
(Jeunen et al., RecSys 2024).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.splits import Split
from deepprl.eval.headroom import grid_rewards, holdout_users, paired_by_user, user_folds
from deepprl.eval.metrics import top_k_reward
from deepprl.policy.weights import simplex_grid
from deepprl.recommender import Recommender
from deepprl.train.stage2 import Trajectories, build_trajectories


def stage2_users(data: Interactions, split: Split, config: RunConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(learn, check) event masks [N]: the stage-2 pool (train | valid events) split by user,
    `policy.holdout_share` of the pool's users in `check` (seeded by the run's seed)."""
    pool = split.train | split.valid
    held = np.zeros(len(pool), dtype=bool)
    if pool.any():
        held[pool] = holdout_users(data.user[pool], config.policy.holdout_share, config.seed)
    return pool & ~held, pool & held


def check_environment(recommender: Recommender, data: Interactions, events: np.ndarray,
                      config: RunConfig) -> Trajectories:
    """Frozen states and candidate predictions of the events in mask `events` (capped at
    eval.max_events, seeded), as the learners see them."""
    policy = dataclasses.replace(config.policy, max_events=config.eval.max_events)
    return build_trajectories(recommender, data, events, policy, k=config.eval.k,
                              max_candidates=config.train.max_candidates, seed=config.seed)


def best_static(env: Trajectories, config: RunConfig) -> torch.Tensor:
    """The grid point (step 1 / policy.grid_steps, vertices included) with the highest mean
    reward over `env`'s events: [K]."""
    grid = simplex_grid(env.y_hat.shape[2], config.policy.grid_steps)
    rewards = grid_rewards(env.y_hat, env.reward, env.valid, grid, config.eval.k)  # [E, G]
    return grid[int(rewards.mean(0).argmax())]


def policy_check(recommender: Recommender, data: Interactions, learn: np.ndarray,
                 check: np.ndarray, config: RunConfig, *,
                 learn_env: Trajectories | None = None,
                 check_env: Trajectories | None = None) -> dict[str, Any]:
    """The recommender's policy vs the best static alpha of the `learn` users, on the
    events of the `check` users (masks [N]); see deepprl.eval.headroom.paired_by_user for
    the figures. `learn_env` and `check_env` (check_environment of `check`), when the
    caller has built them, are reused."""
    k = config.eval.k
    held = check_env if check_env is not None else check_environment(recommender, data,
                                                                      check, config)
    if len(held.sampled) == 0:
        return {"checked": False, "reason": f"no held-out event has more than k={k} "
                                            "candidates"}
    env = learn_env if learn_env is not None else check_environment(recommender, data,
                                                                     learn, config)
    static = best_static(env, config)
    rows = held.sampled
    with torch.no_grad():
        alpha = recommender.policy(held.state[rows], held.context[rows])  # [E, K]
        learned = top_k_reward(held.y_hat, held.reward, held.valid, alpha, k)
        fixed = top_k_reward(held.y_hat, held.reward, held.valid,
                             static.expand(len(rows), -1), k)
    users = data.user[np.flatnonzero(check)[rows.numpy()]]
    return {"checked": True, **paired_by_user(learned.numpy(), fixed.numpy(), users),
            "events": len(rows), "static_weights": static.tolist(),
            "learned_mean_weights": alpha.mean(0).tolist()}


FoldsFit = Callable[[list[tuple[torch.Tensor, torch.Tensor]]],
                    list[tuple[torch.Tensor, dict[str, float]]]]
"""Every fold's (learning rows [L], checked rows [H]) -> per fold (grid index [H] the policy
fitted on its learning rows picks at each checked row, figures of that fit to record); all
folds at once, so a learner may fit them together."""


def cross_fitted_check(rewards: torch.Tensor, grid: torch.Tensor, user: np.ndarray,
                       folds: int, seed: int, fit_folds: FoldsFit, *,
                       reference: torch.Tensor | None = None) -> dict[str, Any]:
    """The learner vs the best static grid alpha, cross-fitted over `folds` folds of users.

    rewards [E, G] of every grid alpha [G, K] at the E stage-2 events, user [E]. For each
    fold, fit_folds learns on the other folds' events and picks an alpha at the fold's
    events, and the static reference is the grid point best on the other folds' events;
    the per-user mean rewards of all folds are pooled into one paired test
    (paired_by_user). static_weights: the best grid point over every event (what a
    fallback serves next to a policy refitted on every user). With `reference` [E] (the
    reward a policy already served earns at each event: an online update's current
    policy), "reference" holds the same paired figures against it."""
    fold = user_folds(user, folds, seed)
    n_folds = int(fold.max()) + 1 if len(fold) else 0
    overall = grid[int(rewards.mean(0).argmax())].tolist()  # the fallback's alpha
    if n_folds < 2:
        return {"checked": False, "reason": "one user in the stage-2 pool: no held-out users",
                "static_weights": overall}
    learned, fixed = torch.empty(len(user)), torch.empty(len(user))
    picks = torch.empty(len(user), dtype=torch.long)
    per_fold = []
    splits = [(torch.from_numpy(np.flatnonzero(fold != f)),
               torch.from_numpy(np.flatnonzero(fold == f))) for f in range(n_folds)]
    for f, ((learn, held), (pick, figures)) in enumerate(zip(splits, fit_folds(splits),
                                                               strict=True)):
        static = int(rewards[learn].mean(0).argmax())
        picks[held] = pick
        learned[held] = rewards[held].gather(1, pick[:, None]).squeeze(1)
        fixed[held] = rewards[held, static]
        mine = paired_by_user(learned[held].numpy(), fixed[held].numpy(), user[held.numpy()])
        per_fold.append({"fold": f, **{k: mine[k] for k in ("users", "gain",
                                                          "gain_lower_bound")},
                         "events": len(held), "static_weights": grid[static].tolist(),
                         **figures})
    result = {"checked": True, **paired_by_user(learned.numpy(), fixed.numpy(), user),
              "events": len(user), "folds": n_folds, "per_fold": per_fold,
              "static_weights": overall, "learned_mean_weights": grid[picks].mean(0).tolist()}
    if reference is not None:
        result["reference"] = paired_by_user(learned.numpy(), reference.numpy(), user)
        result["static_reference"] = paired_by_user(fixed.numpy(), reference.numpy(), user)
    return result


def serves(result: dict[str, Any], fallback: str) -> str:
    """"learned" or "static": what a run serves after `result` of policy_check. With
    fallback "none", always the learned policy; with "static", the learned one only where
    the lower bound of its gain is above zero (an unchecked or undecided run serves the
    static alpha: no evidence is not evidence of a gain)."""
    if fallback == "none":
        return "learned"
    if fallback != "static":
        raise ValueError(f"policy.fallback must be 'static' or 'none', got {fallback!r}")
    bound = result.get("gain_lower_bound", float("nan"))
    return "learned" if result.get("checked") and math.isfinite(bound) and bound > 0 \
        else "static"
