"""Stage 2 per weight learner: the training functions deepprl.learners names.

Each is fit(recommender, data, split, config, *, progress, world, checkpoints) -> (log,
weights): it
learns the recommender's weight policy in place and returns its log and, for static
weights, the weights it chose.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.splits import Split
from deepprl.distributed import World, user_shard
from deepprl.eval.static_weights import tune_static_weights
from deepprl.policy.weights import FixedWeights
from deepprl.recommender import Recommender
from deepprl.train.checkpoint import Checkpoints
from deepprl.train.progress import phase
from deepprl.train.stage1 import Progress
from deepprl.train.stage2 import (
    Learner,
    build_trajectories,
    learn_ddpg,
    learn_dqn,
    learn_reinforce,
)

log = logging.getLogger("deepprl.train")
Fit = Callable[..., tuple[list[dict[str, float]], np.ndarray | None]]


def fit_static(recommender: Recommender, data: Interactions, split: Split,
               config: RunConfig, *, progress: Progress | None, world: World,
               checkpoints: Checkpoints | None = None
               ) -> tuple[list[dict[str, float]], np.ndarray]:
    """Static weights tuned on validation; cheap and deterministic: every rank alike (and
    redone on resume, so it keeps no checkpoint)."""
    phase(progress, "static weights", 0, trials=config.policy.static_trials)
    weights, stage2 = tune_static_weights(recommender, data, split, k=config.eval.k,
                                          trials=config.policy.static_trials,
                                          seed=config.seed)
    phase(progress, "static weights", 1)
    recommender.policy = FixedWeights(torch.from_numpy(weights.astype(np.float32)))
    log.info("static weights tuned on validation: %s", weights.tolist())
    return stage2, weights


def _on_trajectories(learn: Learner) -> Fit:
    """A learner of the logged trajectories (build_trajectories), as a Fit."""

    def fit(recommender: Recommender, data: Interactions, split: Split, config: RunConfig,
            *, progress: Progress | None, world: World,
            checkpoints: Checkpoints | None = None) -> tuple[list[dict[str, float]], None]:
        policy_config, pool = config.policy, split.train | split.valid
        if world.distributed:  # this rank's users' trajectories, and its share of the cap
            pool = pool & user_shard(data.user, world)
            policy_config = dataclasses.replace(
                policy_config, max_events=-(-policy_config.max_events // world.size))
        env = build_trajectories(recommender, data, pool, policy_config, k=config.eval.k,
                                 max_candidates=config.train.max_candidates,
                                 seed=config.seed)
        extra: dict[str, Any] = ({"world": world} if world.distributed
                                 else {"checkpoints": checkpoints})
        return learn(recommender.policy, env, config.policy, k=config.eval.k,
                     seed=config.seed, progress=progress, **extra), None
    return fit


fit_ddpg = _on_trajectories(learn_ddpg)
fit_dqn = _on_trajectories(learn_dqn)
fit_reinforce = _on_trajectories(learn_reinforce)
