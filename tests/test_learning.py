"""Learning works, end to end on the simulator: DeepPRL's learned weights earn more reward than
the references its own evaluation computes under the same protocol, a popularity ranking
and DeepPRL's own predictor ranked with equal weights (the gain of the weight policy).

The simulator's users have hidden, personal and contextual trade-offs (DESIGN §3), so no
one alpha suits them all; a policy that learned nothing, or collapsed to a corner, does not
clear these margins."""

from __future__ import annotations

import numpy as np
import pytest

from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.train.run import train_run

SEEDS = (0, 1, 2)  # each seed changes the simulated world and the training
WORLD = {"name": "simulator", "n_users": 100, "n_items": 40, "events_per_user": 30}


# Measured with this config (one thread, seeds 0-2; reward of the top-5 on the test period,
# the default bandit learner, every seed serving its learned policy):
#   learned - equal weights: 0.079 0.087 0.099
#   learned - popularity:    0.155 0.130 0.234
# (The DDPG learner of an earlier default: equal +0.070 0.056 0.099, popularity +0.177
# 0.117 0.261 on the same seeds.) Another machine's rounding trains a slightly different
# policy, like another seed, so the margins are on the mean over SEEDS and sit well inside
# the measured spread; one collapsed seed alone does not fail the test.
MARGIN_EQUAL, MARGIN_POPULARITY = 0.02, 0.05


def learning_config(seed: int) -> RunConfig:
    """Small but real: the default model and weight learner, a smaller world (3,000
    events), 3 epochs of stage 1; about 30 CPU seconds a seed. The pessimism check
    cross-fits over 2 folds, not 5: the policy served is the one refitted on every user
    either way (learned rewards identical on seeds 0-2), the check only needs fewer fits."""
    return RunConfig(dataset={**WORLD, "seed": seed}, seed=seed, train=TrainConfig(epochs=3),
                     policy=PolicyConfig(static_trials=5, check_folds=2), eval=EvalConfig(k=5))


@pytest.fixture(scope="module")
def rewards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Test-period reward per seed of the learned weights and of each reference."""
    root = tmp_path_factory.mktemp("learning")
    metrics = [train_run(learning_config(seed), root / f"seed{seed}") for seed in SEEDS]
    return {name: np.array([m[name]["reward"] for m in metrics])
            for name in ("learned", "equal", "popularity", "oracle")}


def test_learned_weights_beat_popularity_and_equal_weights(rewards: dict[str, np.ndarray]
                                                           ) -> None:
    learned = rewards["learned"]
    over_equal, over_popularity = learned - rewards["equal"], learned - rewards["popularity"]
    assert over_equal.mean() > MARGIN_EQUAL and (over_equal > 0).sum() >= 2, over_equal
    assert over_popularity.mean() > MARGIN_POPULARITY and (over_popularity > 0).sum() >= 2, \
        over_popularity
    assert (learned <= rewards["oracle"] + 1e-6).all()  # the upper bound holds
