"""Every weight learner by name (policy.algorithm): how its policy is built and trained.

The one place a learner is chosen: artifacts.build_policy builds the acting policy a run
saves and loads; deepprl.train.run trains it and checks where it may run. Adding a learner
is one entry here (its policy in deepprl.policy, its algorithm in deepprl.rl, its training
function in deepprl.train).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from deepprl.config import PolicyConfig
from deepprl.policy.weights import Actor, FixedWeights, GridBandit, GridQPolicy

Build = Callable[[PolicyConfig, int, int, int], nn.Module]
"""(policy config, state dim S, context dim Fc, objectives K) -> the acting policy."""


@dataclass(frozen=True)
class WeightLearner:
    """A registered weight learner."""

    description: str
    """One line for docs and errors."""
    build: Build
    """Builds the acting policy (state, context -> alpha on the simplex)."""
    train: str
    """module:function of its training, imported when a run trains (deepprl.train sits
    above the layers that build policies): fit(recommender, data, split, config, *,
    progress, world, checkpoints) -> (stage-2 log, static weights [K] or None, pessimism
    check or None: see deepprl.train.weights); it sets the recommender's policy (the
    static alpha where the check falls back to it)."""
    distributed: bool = False
    """Runs data-parallel under torchrun (deepprl.distributed)."""
    interactive: bool = False
    """Learns by acting in an interactive world (deepprl.envs) rather than from the
    logged trajectories; train_run, which trains on a log, refuses it."""

    def fit(self) -> Callable[..., tuple[list[dict[str, float]], Any, Any]]:
        module, _, name = self.train.partition(":")
        fn: Callable[..., tuple[list[dict[str, float]], Any, Any]] = getattr(
            importlib.import_module(module), name)
        return fn


def _actor(p: PolicyConfig, state_dim: int, context_dim: int, n_objectives: int) -> Actor:
    return Actor(state_dim=state_dim, context_dim=context_dim, n_objectives=n_objectives,
                 hidden=p.hidden, layers=p.layers, use_context=p.use_context)


def _grid_q(p: PolicyConfig, state_dim: int, context_dim: int, n_objectives: int
            ) -> GridQPolicy:
    return GridQPolicy(state_dim=state_dim, context_dim=context_dim,
                       n_objectives=n_objectives, hidden=p.hidden, layers=p.layers,
                       steps=p.grid_steps, use_context=p.use_context)


def _bandit(p: PolicyConfig, state_dim: int, context_dim: int, n_objectives: int
            ) -> GridBandit:
    return GridBandit(state_dim=state_dim, context_dim=context_dim,
                      n_objectives=n_objectives, hidden=p.hidden, layers=p.layers,
                      steps=p.grid_steps, use_context=p.use_context)


def _static(p: PolicyConfig, state_dim: int, context_dim: int, n_objectives: int
            ) -> FixedWeights:
    return FixedWeights.equal(n_objectives)  # the tuned weights replace it


LEARNERS: dict[str, WeightLearner] = {
    "bandit": WeightLearner("full-information contextual bandit over a grid on the simplex "
                            "(the default on logs)", _bandit,
                            "deepprl.train.weights:fit_bandit", distributed=True),
    "ddpg": WeightLearner("the paper's contextual policy gradient (DDPG)", _actor,
                          "deepprl.train.weights:fit_ddpg", distributed=True),
    "dqn": WeightLearner("DQN over a grid on the simplex (ablation variant 6)", _grid_q,
                         "deepprl.train.weights:fit_dqn"),
    "reinforce": WeightLearner("REINFORCE, Dirichlet policy on the simplex (variant 7)",
                               _actor, "deepprl.train.weights:fit_reinforce"),
    "static": WeightLearner("one alpha for everyone, Optuna on validation events",
                            _static, "deepprl.train.weights:fit_static", distributed=True),
}


def weight_learner(name: str) -> WeightLearner:
    """The registered learner `name`; ValueError naming the field otherwise."""
    if name not in LEARNERS:
        raise ValueError(f"unknown policy.algorithm {name!r}; expected one of "
                         f"{sorted(LEARNERS)}")
    return LEARNERS[name]
