"""The serving path of the Mixture of HyperNetwork (no gradients; PredictorModel.predict
with fast=True, used by deepprl.ranking.history and deepprl.serve) computes what the plain
forward computes, with the products regrouped: one matmul per
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


def _moh(layers: int, similarity: str, seed: int = 0, self_weight: float = 0.0
         ) -> MixtureOfHyperNetwork:
    torch.manual_seed(seed)
    return MixtureOfHyperNetwork(user_dim=5, item_dim=4, n_objectives=3, hidden=8,
                                 tower_hidden=6, objective_embedding_dim=4,
                                 similarity=similarity, tower_layers=layers,
                                 self_weight=self_weight)


def _served(model: MixtureOfHyperNetwork, user: torch.Tensor, items: torch.Tensor
            ) -> torch.Tensor:
    B, C, Di = items.shape
    with torch.no_grad():
        return model.forward_projected(user, model.item_projection(items.reshape(B * C, Di))
                                       .view(B, C, -1))


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("similarity", ["neg_sq_dist", "dot"])
@pytest.mark.parametrize("self_weight", [0.0, 0.9])
def test_moh_inference_forward_equals_training_forward(layers: int, similarity: str,
                                                       self_weight: float) -> None:
    model = _moh(layers, similarity, self_weight=self_weight)
    torch.manual_seed(1)
    user, items = torch.randn(4, 5), torch.randn(4, 9, 4)
    expected = model(user, items).detach()  # gradients on: the training arithmetic
    attention = model.last_attention
    with torch.no_grad():  # without gradients the plain forward is the same arithmetic
        torch.testing.assert_close(model(user, items), expected, atol=0, rtol=0)
    got = _served(model, user, items)
    assert got.shape == (4, 9, 3)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    assert model.last_attention is not None and attention is not None
    torch.testing.assert_close(model.last_attention, attention, atol=TOL, rtol=0)


def test_moh_inference_follows_a_parameter_change() -> None:
    """The cached layout is rebuilt when a parameter changes in place (an optimiser step)."""
    model = _moh(2, "neg_sq_dist")
    user, items = torch.randn(2, 5), torch.randn(2, 7, 4)
    before = _served(model, user, items)
    with torch.no_grad():
        model.head_bias.add_(0.5)
        next(iter(model.hypernetwork.parameters())).mul_(1.5)
    after = _served(model, user, items)
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
            got = model.predict(state, batch.context, items, fast=True)
            plain = model.predict(state, batch.context, items)
        expected = model.predict(state, batch.context, items)  # gradients on
        torch.testing.assert_close(plain, expected.detach(), atol=0, rtol=0)
        torch.testing.assert_close(got, expected.detach(), atol=TOL, rtol=0)
        if step == 0:
            optimiser.zero_grad()
            expected.sum().backward()
            optimiser.step()


def test_state_cache_keeps_states_by_their_inputs() -> None:
    """A hit gives the state the encoder gives; another history is another key; a
    parameter change empties the cache; the oldest entry goes beyond max_entries; a caller
    that writes into the state it got (the cold-start swap) leaves the cache intact."""
    from deepprl.ranking.scoring import StateCache

    data = load_simulator(SimulatorConfig(n_users=6, n_items=20, events_per_user=8, seed=0))
    torch.manual_seed(0)
    model = build_model(RunConfig(dataset={"name": "simulator"}, model=ModelConfig()), data)
    model.eval()
    hist = history_index(data, model.config.history_length)
    batches = [make_batch(data, hist[[e]], np.array([e])) for e in (5, 6, 13)]
    cache = StateCache(max_entries=2)
    with torch.no_grad():
        first = cache.state(model, batches[0])
        first[:] = 0.0  # the caller's copy
        again = cache.state(model, batches[0])
        torch.testing.assert_close(again, model.state(batches[0]), atol=0, rtol=0)
        assert (cache.hits, cache.misses) == (1, 1)
        cache.state(model, batches[1])  # the same user one step later: another key
        assert (cache.hits, cache.misses) == (1, 2)
        cache.state(model, batches[2])  # a third entry: batches[0], the oldest, goes
        cache.state(model, batches[0])
        assert (cache.hits, cache.misses) == (1, 4)
        model.encoder.cell.x_gates.bias.add_(0.3)  # in place, as an optimiser step
        changed = cache.state(model, batches[0])
        assert cache.misses == 5
        torch.testing.assert_close(changed, model.state(batches[0]), atol=0, rtol=0)
        assert (changed - again).abs().max() > 1e-4
    with pytest.raises(ValueError, match="one-event"):
        cache.state(model, make_batch(data, hist[[5, 6]], np.array([5, 6])))


def test_predict_without_the_table_beyond_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalogue whose table would pass ITEM_PART_MAX_FLOATS projects its candidates
    per call: the same predictions."""
    from deepprl.models import network

    data = load_simulator(SimulatorConfig(n_users=6, n_items=20, events_per_user=8, seed=0))
    torch.manual_seed(0)
    model = build_model(RunConfig(dataset={"name": "simulator"}, model=ModelConfig()), data)
    model.eval()
    events = np.arange(0, data.n_events, 7)
    batch = make_batch(data, history_index(data, model.config.history_length)[events], events)
    items = torch.from_numpy(np.tile(np.arange(1, data.n_items + 1), (len(events), 1)))
    with torch.no_grad():
        state = model.state(batch)
        tabled = model.predict(state, batch.context, items, fast=True)
        monkeypatch.setattr(network, "ITEM_PART_MAX_FLOATS", 10)
        direct = model.predict(state, batch.context, items, fast=True)
    torch.testing.assert_close(direct, tabled, atol=TOL, rtol=0)
