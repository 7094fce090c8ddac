"""Stage 2 per weight learner: the training functions deepprl.learners names.

Each is fit(recommender, data, split, config, *, progress, world, checkpoints) -> (log,
weights, check): it learns the recommender's weight policy in place and returns its log,
for static weights the weights it chose, and for the learners of the logged trajectories
the pessimism check (deepprl.train.pessimism): they learn on the stage-2 pool's learning
users only and are compared with the best static alpha on the held-out users (the bandit
instead cross-fits the check over folds of every stage-2 user and learns the served
policy on all of them), and with policy.fallback = "static" the recommender serves that
static alpha where the learned policy does not beat it (check["served"] says which).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.splits import Split
from deepprl.distributed import SINGLE, World, user_shard
from deepprl.eval.headroom import grid_rewards, holdout_users
from deepprl.eval.static_weights import tune_static_weights
from deepprl.io import json_safe
from deepprl.policy.weights import FixedWeights, GridBandit
from deepprl.recommender import Recommender
from deepprl.rl.bandit import BanditData, Job, learn_grid_bandits
from deepprl.train.checkpoint import Checkpoints
from deepprl.train.pessimism import (
    best_static,
    cross_fitted_check,
    policy_check,
    serves,
    stage2_users,
)
from deepprl.train.progress import phase
from deepprl.train.stage1 import Progress
from deepprl.train.stage2 import (
    Learner,
    Trajectories,
    build_trajectories,
    learn_ddpg,
    learn_dqn,
    learn_reinforce,
    require_events,
)

log = logging.getLogger("deepprl.train")
Fit = Callable[..., tuple[list[dict[str, float]], np.ndarray | None, dict[str, Any] | None]]


def fit_static(recommender: Recommender, data: Interactions, split: Split,
               config: RunConfig, *, progress: Progress | None, world: World,
               checkpoints: Checkpoints | None = None
               ) -> tuple[list[dict[str, float]], np.ndarray, None]:
    """Static weights tuned on validation; cheap and deterministic: every rank alike (and
    redone on resume, so it keeps no checkpoint)."""
    phase(progress, "static weights", 0, trials=config.policy.static_trials)
    weights, stage2 = tune_static_weights(recommender, data, split, k=config.eval.k,
                                          trials=config.policy.static_trials,
                                          seed=config.seed)
    phase(progress, "static weights", 1)
    recommender.policy = FixedWeights(torch.from_numpy(weights.astype(np.float32)))
    log.info("static weights tuned on validation: %s", weights.tolist())
    return stage2, weights, None


def _learning_pool(data: Interactions, split: Split, config: RunConfig, world: World
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, RunConfig]:
    """(learn, check, pool): the stage-2 users' masks [N] and the events this rank learns
    from (its users' share of `learn` under torchrun, with its share of the event cap),
    with the config it learns under."""
    learn, check = stage2_users(data, split, config)
    if not learn.any():  # a single user: nobody to hold out, nothing to check on
        learn, check = check, np.zeros_like(check)
    pool, policy_config = learn, config.policy
    if world.distributed:  # this rank's users' trajectories, and its share of the cap
        pool = pool & user_shard(data.user, world)
        policy_config = dataclasses.replace(
            policy_config, max_events=-(-policy_config.max_events // world.size))
    return learn, check, pool, dataclasses.replace(config, policy=policy_config)


def _trajectories(recommender: Recommender, data: Interactions, pool: np.ndarray,
                  config: RunConfig) -> Trajectories:
    return build_trajectories(recommender, data, pool, config.policy, k=config.eval.k,
                              max_candidates=config.train.max_candidates, seed=config.seed)


def check_and_serve(recommender: Recommender, data: Interactions, learn: np.ndarray,
                    check: np.ndarray, config: RunConfig, world: World,
                    env: Trajectories) -> dict[str, Any] | None:
    """The pessimism check of the learned policy on the held-out users (rank 0 only: the
    other ranks save nothing; under torchrun the static reference is re-derived from every
    learning user, `env` holding only this rank's), then decide."""
    if not world.main:
        return None
    result = policy_check(recommender, data, learn, check, config,
                          learn_env=None if world.distributed else env) if check.any() \
        else {"checked": False, "reason": "one user in the stage-2 pool: no held-out users"}
    if "static_weights" not in result:  # unchecked: the fallback still needs an alpha
        result["static_weights"] = best_static(env, config).tolist()
    return decide(recommender, result, config)


def decide(recommender: Recommender, result: dict[str, Any], config: RunConfig
           ) -> dict[str, Any]:
    """With policy.fallback = "static" and no evidence of a gain in `result` (a check with
    "static_weights"), the recommender's policy becomes the static alpha. Returns the
    check with "served" (what the run serves) and "verdict" (what the static fallback
    decides)."""
    result["verdict"] = serves(result, "static")
    result["served"] = serves(result, config.policy.fallback)
    _log_check(result, config.policy.fallback)
    if result["served"] == "static":
        recommender.policy = FixedWeights(torch.tensor(result["static_weights"]))
    # NaN (too few users to bound the gain) as null: metrics.json stays strict JSON
    checked: dict[str, Any] = json_safe(result)
    return checked


def _log_check(result: dict[str, Any], fallback: str) -> None:
    alpha = [round(a, 3) for a in result["static_weights"]]
    for fold in result.get("per_fold", []):
        log.info("policy check, fold %d: %d users, gain %+.4f, %d steps", fold["fold"],
                 fold["users"], fold["gain"], fold.get("chosen_steps", 0))
    if result["checked"]:
        how = f", cross-fitted over {result['folds']} folds" if "folds" in result else ""
        log.info("policy check on %d held-out users (%d events" + how + "): learned %.4f, "
                 "static %.4f "
                 "(alpha %s), gain %+.4f, lower bound %+.4f, p %.3g; serving %s",
                 result["users"], result["events"], result["learned"], result["static"],
                 alpha, result["gain"], result["gain_lower_bound"], result["p_value"],
                 result["served"])
    else:
        log.info("policy check skipped: %s; serving %s", result["reason"], result["served"])
    if result["served"] == "static":
        log.warning("the learned policy shows no gain over the best static alpha on users "
                    "it never saw: the run serves the static alpha %s (policy.fallback = "
                    "\"none\" keeps the learned policy)", alpha)
    elif result["verdict"] == "static":
        log.warning("the learned policy shows no gain over the best static alpha on "
                    "held-out users; kept because policy.fallback = %r", fallback)


def _stopping_events(data: Interactions, split: Split, pool: np.ndarray,
                     rows: np.ndarray, config: RunConfig) -> np.ndarray:
    """[E] bool over the learning events `rows` (positions in the pool): those that choose
    the bandit's number of steps. The learning users' validation events (their latest
    ones before the test period), as the test judges the same users' later events; where
    the split has none, a seeded policy.stop_share of the learning users."""
    events = np.flatnonzero(pool)[rows]
    later = split.valid[events]
    if later.any() and not later.all():
        return later
    users = data.user[events]
    return (holdout_users(users, config.policy.stop_share, config.seed + 1)
            if len(np.unique(users)) > 1 else np.zeros(len(users), dtype=bool))


def fit_bandit(recommender: Recommender, data: Interactions, split: Split,
               config: RunConfig, *, progress: Progress | None, world: World,
               checkpoints: Checkpoints | None = None
               ) -> tuple[list[dict[str, float]], None, dict[str, Any] | None]:
    """The full-information grid bandit (deepprl.rl.bandit). The grid rewards are computed
    once (stage 1 is frozen); learning takes seconds, so it keeps no checkpoint: a resumed
    run learns it again, identically (seeded). With policy.check_folds >= 2 (one process)
    the check is cross-fitted and the policy learns on every stage-2 user; otherwise it
    learns on the learning users and is checked on the held-out share."""
    policy = recommender.policy
    if not isinstance(policy, GridBandit):
        raise ValueError(f"policy.algorithm 'bandit' learns a GridBandit, got "
                         f"{type(policy).__name__}")
    if config.policy.check_folds >= 2 and not world.distributed:
        return _cross_fitted_bandit(recommender, policy, data, split, config, progress)
    learn, check, pool, rank_config = _learning_pool(data, split, config, world)
    env = _trajectories(recommender, data, pool, rank_config)
    if not world.distributed:  # under torchrun a rank may hold no decision point
        require_events(env)
    bandit = _bandit_data(policy, data, split, pool, env, config)
    log = _learn_bandit(policy, bandit, config, world, progress)
    return log, None, check_and_serve(recommender, data, learn, check, config, world, env)


def _bandit_data(policy: GridBandit, data: Interactions, split: Split, pool: np.ndarray,
                 env: Trajectories, config: RunConfig) -> BanditData:
    """The bandit's learning events: env's decision points with every grid point's
    reward and the events that choose the number of steps."""
    rows = env.sampled
    rewards = grid_rewards(env.y_hat, env.reward, env.valid, policy.grid, config.eval.k)
    stop = _stopping_events(data, split, pool, rows.numpy(), config)
    return BanditData(state=env.state[rows], context=env.context[rows], rewards=rewards,
                      stop=torch.from_numpy(stop))


def _learn_bandit(policy: GridBandit, bandit: BanditData, config: RunConfig, world: World,
                  progress: Progress | None, *, keep_best: bool = False,
                  reset: bool = True) -> list[dict[str, float]]:
    """learn_grid_bandit from the seeded initial weights (the same start whatever ran
    before: resume, or the folds of the check); reset=False: from the policy's own
    weights (an online update trains the served policy further)."""
    return _learn_bandits(bandit, [Job(policy, keep_best, _reporter(config, progress))],
                          config, world, reset=reset)[0]


def _reporter(config: RunConfig, progress: Progress | None
              ) -> Callable[[int, dict[str, float]], None] | None:
    steps = config.policy.steps
    return None if progress is None else \
        lambda step, record: progress("policy", step, steps, record)


def _learn_bandits(bandit: BanditData, jobs: list[Job], config: RunConfig, world: World, *,
                   reset: bool = True) -> list[list[dict[str, float]]]:
    """learn_grid_bandits, every job's policy from the seeded initial weights (reset)."""
    for job in jobs:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            for module in job.policy.modules():
                if reset and isinstance(module, nn.Linear):
                    module.reset_parameters()
    p = config.policy
    return learn_grid_bandits(bandit, jobs, steps=p.steps, batch_size=p.batch_size, lr=p.bandit_lr,
                              weight_decay=p.weight_decay, patience=p.patience,
                              seed=config.seed, world=world)


def fold_jobs(start: GridBandit, folds: list[tuple[torch.Tensor, torch.Tensor]]
              ) -> list[Job]:
    """One job per fold of the cross-fitted check: a copy of `start` learning on the fold's
    learning rows, keeping its best state of the search for the number of steps."""
    return [Job(copy.deepcopy(start), keep_best=True, rows=learn, record_fit=False)
            for learn, _ in folds]


def fold_picks(jobs: list[Job], logs: list[list[dict[str, float]]], bandit: BanditData,
               folds: list[tuple[torch.Tensor, torch.Tensor]]
               ) -> list[tuple[torch.Tensor, dict[str, float]]]:
    """Each fold job's greedy grid index at its fold's checked rows, with its chosen steps."""
    out = []
    for job, log_, (_, held) in zip(jobs, logs, folds, strict=True):
        with torch.no_grad():
            pick = job.policy.scores(bandit.state[held], bandit.context[held]).argmax(-1)
        out.append((pick, {"chosen_steps": log_[-1]["chosen_steps"]}))
    return out


def _cross_fitted_bandit(recommender: Recommender, policy: GridBandit, data: Interactions,
                         split: Split, config: RunConfig, progress: Progress | None
                         ) -> tuple[list[dict[str, float]], None, dict[str, Any]]:
    """Check by cross-fitting over policy.check_folds folds of the stage-2 users
    (deepprl.train.pessimism.cross_fitted_check) and learn the served policy on every
    stage-2 user: check_folds + 1 fits of the bandit, trained together (learn_grid_bandits;
    a fold keeps its best state of the search for the number of steps, without the refit)."""
    pool = split.train | split.valid
    env = _trajectories(recommender, data, pool, config)
    require_events(env)
    bandit = _bandit_data(policy, data, split, pool, env, config)
    users = data.user[np.flatnonzero(pool)[env.sampled.numpy()]]
    served: list[list[dict[str, float]]] = []

    def fit_folds(folds: list[tuple[torch.Tensor, torch.Tensor]]
                  ) -> list[tuple[torch.Tensor, dict[str, float]]]:
        jobs = fold_jobs(policy, folds)
        logs = _learn_bandits(bandit, [*jobs, Job(policy, False, _reporter(config, progress))],
                              config, SINGLE)
        served.append(logs[-1])
        return fold_picks(jobs, logs[:-1], bandit, folds)

    phase(progress, "policy check", 0)
    result = cross_fitted_check(bandit.rewards, policy.grid, users, config.policy.check_folds,
                                config.seed, fit_folds)
    phase(progress, "policy check", 1)
    if not served:  # one user: no folds, the served policy alone
        served.append(_learn_bandit(policy, bandit, config, SINGLE, progress))
    return served[0], None, decide(recommender, result, config)


def _on_trajectories(learn: Learner) -> Fit:
    """A learner of the logged trajectories (build_trajectories) of the learning users,
    checked against the best static alpha on the held-out users, as a Fit."""

    def fit(recommender: Recommender, data: Interactions, split: Split, config: RunConfig,
            *, progress: Progress | None, world: World,
            checkpoints: Checkpoints | None = None
            ) -> tuple[list[dict[str, float]], None, dict[str, Any] | None]:
        learn_mask, check, pool, rank_config = _learning_pool(data, split, config, world)
        env = _trajectories(recommender, data, pool, rank_config)
        extra: dict[str, Any] = ({"world": world} if world.distributed
                                 else {"checkpoints": checkpoints})
        stage2 = learn(recommender.policy, env, config.policy, k=config.eval.k,
                       seed=config.seed, progress=progress, **extra)
        return stage2, None, check_and_serve(recommender, data, learn_mask, check, config,
                                             world, env)
    return fit


fit_ddpg = _on_trajectories(learn_ddpg)
fit_dqn = _on_trajectories(learn_dqn)
fit_reinforce = _on_trajectories(learn_reinforce)
