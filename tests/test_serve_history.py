"""Scoring from an explicit history (deepprl.ranking.history, used by the service) against the
logged-event path it must reproduce."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from deepprl.artifacts import load_run
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.clock import CLOCK_CONTEXT
from deepprl.data.sequences import Batch, history_index, make_batch
from deepprl.ranking.history import (
    batch_from_history,
    clock_columns,
    clock_context,
    mean_user_embedding,
    score_history,
)
from deepprl.recommender import Recommender, next_event_batch
from deepprl.train.run import train_run


@pytest.fixture(scope="module")
def recommender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recommender]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("history-run")
    train_run(RunConfig(dataset={"name": "simulator", "n_users": 12, "n_items": 30,
                                 "events_per_user": 16},
                        train=TrainConfig(epochs=1), policy=PolicyConfig(steps=20),
                        eval=EvalConfig(k=5)), out)
    yield load_run(out)[1]
    torch.set_num_threads(threads)


def _assert_same_batch(a: Batch, b: Batch) -> None:
    for name in ("user", "hist_items", "hist_mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for name in ("hist_gaps", "hist_context", "context"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=name)


@pytest.mark.parametrize("position", [0, 1, 5, 10, 11, 15])
def test_batch_from_history_matches_logged_events(recommender: Recommender, position: int) -> None:
    """A logged event's inputs, rebuilt from its explicit history, equal make_batch's."""
    data, L = recommender.data, recommender.model.config.history_length
    user = 3
    span = data.user_events(user)
    event = int(span[position])
    expected = make_batch(data, history_index(data, L)[[event]], np.array([event]))
    past = span[:position]
    tail = past[-(L + 1):]
    prev = float(data.time[tail[0]]) if len(past) > L else None
    tail = tail[-L:] if len(past) > L else tail
    got = batch_from_history(user=user, items=data.item[tail], times=data.time[tail],
                             contexts=data.context[tail], context=data.context[event],
                             length=L, prev_time=prev)
    _assert_same_batch(got, expected)
    # passing the whole past (longer than L) must give the same result
    whole = batch_from_history(user=user, items=data.item[past], times=data.time[past],
                               contexts=data.context[past], context=data.context[event],
                               length=L)
    _assert_same_batch(whole, expected)


def test_clock_context_matches_the_encoded_log(recommender: Recommender) -> None:
    data = recommender.data
    assert clock_columns(data) == len(CLOCK_CONTEXT)
    span = data.user_events(2)
    got = clock_context(data, data.time[span[3:]], float(data.time[span[2]]))
    np.testing.assert_allclose(got, data.context[span[3:], :5], atol=1e-6)
    first = clock_context(data, data.time[span[:2]], None)
    np.testing.assert_allclose(first, data.context[span[:2], :5], atol=1e-6)
    assert clock_context(data, np.zeros(0), None).shape == (0, 5)


def test_score_history_equals_recommend(recommender: Recommender) -> None:
    data, L = recommender.data, recommender.model.config.history_length
    user = 5
    at = float(data.time[data.user_events(user)[-1]]) + 7200.0
    batch = next_event_batch(data, user, L, at)
    items = torch.arange(1, data.n_items + 1)[None]
    scored = score_history(recommender, batch, items, k=4)
    expected = recommender.recommend(data.user_ids[user - 1], k=4, at_time=at)
    assert [data.item_ids[int(i)] for i in scored.top] == [r["item"] for r in expected["items"]]
    np.testing.assert_allclose(scored.weights, list(expected["weights"].values()), rtol=1e-6)
    np.testing.assert_allclose(scored.scores, scored.y_hat @ scored.weights, rtol=1e-5)
    assert scored.top.shape == (4,)
    # k above the number of candidates returns every candidate
    assert score_history(recommender, batch, items[:, :3], k=10).top.shape == (3,)
    with pytest.raises(ValueError, match="k must be positive"):
        score_history(recommender, batch, items, k=0)


def test_state_layout_and_cold_start_embedding(recommender: Recommender) -> None:
    """The state is [h ; user embedding]; score_history's override replaces the user part."""
    model, data = recommender.model, recommender.data
    batch = next_event_batch(data, 4, model.config.history_length)
    with torch.no_grad():
        state = model.state(batch)
        user_part = model.user(batch.user)
    du = user_part.shape[1]
    torch.testing.assert_close(state[:, -du:], user_part)
    mean = mean_user_embedding(model)
    assert mean.shape == (du,)
    items = torch.arange(1, 6)[None]
    scored = score_history(recommender, batch, items, k=2, user_embedding=mean)
    np.testing.assert_allclose(scored.state[-du:], mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(scored.state[:-du], state[0, :-du].numpy(), rtol=1e-6)


def test_empty_history_is_a_valid_state(recommender: Recommender) -> None:
    data, L = recommender.data, recommender.model.config.history_length
    context = np.zeros(data.context.shape[1], dtype=np.float32)
    batch = batch_from_history(user=0, items=np.zeros(0, dtype=np.int64), times=np.zeros(0),
                               contexts=np.zeros((0, len(context)), dtype=np.float32),
                               context=context, length=L)
    assert not batch.hist_mask.any()
    scored = score_history(recommender, batch, torch.arange(1, 8)[None], k=3,
                           user_embedding=mean_user_embedding(recommender.model))
    assert np.isfinite(scored.state).all() and np.isfinite(scored.y_hat).all()
    assert scored.weights.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="same length"):
        batch_from_history(user=0, items=np.array([1]), times=np.zeros(2),
                           contexts=np.zeros((1, len(context))), context=context, length=L)


def test_clock_context_of_an_out_of_order_step(recommender: Recommender) -> None:
    data = recommender.data
    got = clock_context(data, np.array([7200.0, 3600.0]), 0.0)
    own = clock_context(data, np.array([3600.0]), None)
    np.testing.assert_allclose(got[1, :4], own[0, :4], atol=1e-6)  # its own hour and weekday
    assert got[1, 4] == 0.0 and np.isfinite(got).all()  # and a zero gap, not NaN
