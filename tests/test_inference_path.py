"""The inference path of the Mixture of HyperNetwork (no gradients: serving, evaluation)
computes what the training forward computes, with the products regrouped: one matmul per
tower layer for all towers, query, key and heads in one matmul, the K x K squared distance
summed by hand instead of cdist, and in PredictorModel.predict the item half s_i W_item
taken from one table for the whole catalogue. Float32 rounding of regrouped sums differs by
a few ulps (~1e-7 on y_hat in [0, 1]); 1e-6 bounds it and still fails on any wrong term
(a swapped tower, a missing bias or a wrong softmax axis moves y_hat by ~1e-2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepprl.artifacts import build_model
from deepprl.config import ModelConfig, RunConfig
from deepprl.data.sequences import history_index, make_batch
from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.models.predictors import MixtureOfHyperNetwork

TOL = 1e-6


def _moh(layers: int, similarity: str, seed: int = 0) -> MixtureOfHyperNetwork:
    torch.manual_seed(seed)
    return MixtureOfHyperNetwork(user_dim=5, item_dim=4, n_objectives=3, hidden=8,
                                 tower_hidden=6, objective_embedding_dim=4,
                                 similarity=similarity, tower_layers=layers)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("similarity", ["neg_sq_dist", "dot"])
def test_moh_inference_forward_equals_training_forward(layers: int, similarity: str) -> None:
    model = _moh(layers, similarity)
    torch.manual_seed(1)
    user, items = torch.randn(4, 5), torch.randn(4, 9, 4)
    expected = model(user, items).detach()  # gradients on: the training arithmetic
    attention = model.last_attention
    with torch.no_grad():
        got = model(user, items)
    assert got.shape == (4, 9, 3)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    assert model.last_attention is not None and attention is not None
    torch.testing.assert_close(model.last_attention, attention, atol=TOL, rtol=0)


def test_moh_inference_follows_a_parameter_change() -> None:
    """The cached layout is rebuilt when a parameter changes in place (an optimiser step)."""
    model = _moh(2, "neg_sq_dist")
    user, items = torch.randn(2, 5), torch.randn(2, 7, 4)
    with torch.no_grad():
        before = model(user, items)
        model.head_bias.add_(0.5)
        next(iter(model.hypernetwork.parameters())).mul_(1.5)
        after = model(user, items)
    expected = model(user, items).detach()
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, atol=TOL, rtol=0)


def test_predict_with_the_item_table_equals_the_training_path() -> None:
    """PredictorModel.predict without gradients (a cached [I + 1, K T1] table of item
    halves, indexed) against the same model with gradients on, on real simulator inputs,
    before and after an optimiser step."""
    data = load_simulator(SimulatorConfig(n_users=12, n_items=30, events_per_user=8, seed=0))
    torch.manual_seed(0)
    model = build_model(RunConfig(dataset={"name": "simulator"}, model=ModelConfig()), data)
    events = np.arange(0, data.n_events, 5)
    batch = make_batch(data, history_index(data, model.config.history_length)[events], events)
    items = torch.from_numpy(np.tile(np.arange(1, data.n_items + 1), (len(events), 1)))
    model.eval()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(2):
        with torch.no_grad():
            state = model.state(batch)
            got = model.predict(state, batch.context, items)
        expected = model.predict(state, batch.context, items)  # gradients on
        torch.testing.assert_close(got, expected.detach(), atol=TOL, rtol=0)
        if step == 0:
            optimiser.zero_grad()
            expected.sum().backward()
            optimiser.step()
