"""The weight-learner registry (deepprl.learners): every learner builds its policy, trains a
few steps on a tiny simulator through its registered fit, and acts on the simplex."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deepprl.artifacts import build_model, build_policy, run_split
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.registry import load_dataset
from deepprl.distributed import SINGLE
from deepprl.learners import LEARNERS, weight_learner
from deepprl.recommender import Recommender

DATASET = {"name": "simulator", "n_users": 20, "n_items": 30, "events_per_user": 20}


def tiny(algorithm: str) -> RunConfig:
    return RunConfig(dataset=dict(DATASET), train=TrainConfig(epochs=1),
                     policy=PolicyConfig(algorithm=algorithm, steps=5, batch_size=16,
                                         max_events=200, static_trials=3, hidden=8,
                                         layers=1),
                     eval=EvalConfig(k=3))


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_builds_trains_and_acts_on_the_simplex(name: str) -> None:
    config = tiny(name)
    data = load_dataset(config.dataset)
    split = run_split(data, config)
    torch.manual_seed(0)
    model = build_model(config, data)
    policy = build_policy(config, model, data)
    recommender = Recommender(model, policy, data)
    before = {k: v.clone() for k, v in recommender.policy.state_dict().items()}
    log, weights, check = weight_learner(name).fit()(recommender, data, split, config,
                                                     progress=None, world=SINGLE)
    assert log, "a learner returns its log"
    after = policy.state_dict()  # the learned policy, whatever the run serves
    assert any(not torch.equal(before[k], after[k]) for k in before) or weights is not None
    if name == "static":
        assert check is None
    else:  # checked against the best static alpha on held-out users, and served accordingly
        assert check is not None and check["served"] in ("learned", "static")
        assert (recommender.policy is policy) == (check["served"] == "learned")
    events = np.flatnonzero(split.test)[:50]
    alpha = recommender.weights(recommender.states(events), data.context[events])
    assert alpha.shape == (len(events), data.n_objectives)
    assert (alpha >= 0).all()
    np.testing.assert_allclose(alpha.sum(1), 1.0, rtol=1e-5)
    if weights is not None:  # static: the policy now ranks with the weights it chose
        np.testing.assert_allclose(alpha, np.broadcast_to(weights / weights.sum(),
                                                          alpha.shape), rtol=1e-6)


def test_unknown_learner_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"policy\.algorithm 'nope'"):
        weight_learner("nope")


def test_registry_says_where_each_learner_runs() -> None:
    assert {n for n, entry in LEARNERS.items() if entry.distributed} == {"bandit", "ddpg",
                                                                          "static"}
    assert not any(entry.interactive for entry in LEARNERS.values())  # all learn from logs
    for entry in LEARNERS.values():
        assert callable(entry.fit())
        policy = entry.build(dataclasses.replace(PolicyConfig(), hidden=4, layers=1), 6, 2, 3)
        alpha = policy(torch.randn(5, 6), torch.randn(5, 2))
        assert alpha.shape == (5, 3)
        torch.testing.assert_close(alpha.sum(1), torch.ones(5))
