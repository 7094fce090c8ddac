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


# Measured with this config (one thread, seeds 0-5; reward of the top-5 on the test period):
#   learned - equal weights: 0.070 0.056 0.099 0.047 0.076 0.104 (mean 0.075, min 0.047)
#   learned - popularity:    0.177 0.117 0.261 0.139 0.170 0.200 (mean 0.177, min 0.117)
# With fewer DDPG steps the policy can collapse to a corner: 2,000 steps, or 3,000 of 128
# transitions, gave learned 0.728 < equal 0.733 on seed 1 (and hidden=32 with 3,000 steps
# +0.053 there, at 26.6 instead of 34 CPU seconds a seed). Another machine's rounding trains
# a slightly different policy, like another seed, so the margins are on the mean over SEEDS
# and sit well inside the measured spread; one collapsed seed alone does not fail the test.
MARGIN_EQUAL, MARGIN_POPULARITY = 0.02, 0.05


def learning_config(seed: int) -> RunConfig:
    """Small but real: the default model and DDPG (3,000 steps of 256 transitions), a
    smaller world (3,000 events), 3 epochs of stage 1; about 34 CPU seconds a seed."""
    return RunConfig(dataset={**WORLD, "seed": seed}, seed=seed, train=TrainConfig(epochs=3),
                     policy=PolicyConfig(static_trials=5), eval=EvalConfig(k=5))


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
