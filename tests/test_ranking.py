"""deepprl.ranking: the Ranker protocol over every trained model kind, and the one time
encoding (deepprl.data.clock) that the worlds, the A/B arms and training share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deepprl.abtest.serving import HistoryStore, clock_steps
from deepprl.artifacts import build_item_policy, build_model, build_policy, item_ranker
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import EvalConfig, RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.sequences import Batch, candidate_items, history_index, make_batch
from deepprl.data.simulator import SimulatorConfig, make_world
from deepprl.envs.agents import lane_batch
from deepprl.envs.core import Population, ResponseConfig
from deepprl.envs.simulator_env import SimulatorTruth
from deepprl.ranking import Ranker, score_batch, utility
from deepprl.recommender import Recommender

DATASET = {"name": "simulator", "n_users": 12, "n_items": 25, "events_per_user": 15}
RANKERS = ("deepprl", *sorted(ITEM_POLICIES))


def _ranker(name: str) -> Ranker:
    """An untrained model of kind `name` (its surface, not its quality, is under test)."""
    config = RunConfig(name=name, dataset=dict(DATASET), eval=EvalConfig(k=3))
    data = load_dataset(config.dataset)
    torch.manual_seed(0)
    if name in ITEM_POLICIES:
        module, _ = build_item_policy(config, data)
        return item_ranker(config, data, module)
    model = build_model(config, data)
    return Recommender(model, build_policy(config, model, data), data)


@pytest.mark.parametrize("name", RANKERS)
def test_every_ranker_offers_the_same_surface(name: str) -> None:
    ranker = _ranker(name)
    data = ranker.data
    events = np.array([data.user_events(u)[-1] for u in range(1, data.n_users + 1)])
    items = candidate_items(data, events, np.ones(data.n_events, dtype=bool))  # [E, C]
    scores = ranker.scores(events, items)
    assert scores.shape == items.shape and np.isfinite(scores).all()
    # inputs built by hand score as the logged path does
    batch = make_batch(data, history_index(data, ranker.history_length)[events], events)
    np.testing.assert_array_equal(ranker.batch_scores(batch, torch.from_numpy(items)), scores)
    alpha = ranker.learned_weights(events, items)
    values = ranker.objective_scores(events, items)
    if alpha is not None:  # a weighted model: scores are sum_k alpha_k y_hat_k
        assert values is not None and values.shape == (*items.shape, data.n_objectives)
        assert (alpha >= 0).all()
        np.testing.assert_allclose(alpha.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(
            utility(torch.from_numpy(values), torch.from_numpy(alpha)).numpy(), scores)
    w = np.linspace(1.0, 2.0, data.n_objectives)
    w /= w.sum()
    static = ranker.static_scores(events, items, w)
    assert (static is None) == (not ranker.sweepable)
    if static is not None:
        assert static.shape == items.shape
        rows = np.broadcast_to(w, (len(events), len(w)))
        np.testing.assert_allclose(ranker.batch_scores(batch, torch.from_numpy(items), rows),
                                   static, rtol=1e-5, atol=1e-6)
    else:
        with pytest.raises(ValueError, match="static objective weights"):
            ranker.batch_scores(batch, torch.from_numpy(items),
                                np.broadcast_to(w, (len(events), len(w))))
    out = ranker.recommend(data.user_ids[0], k=3)
    assert len(out["items"]) == 3  # type: ignore[arg-type]
    assert (out["weights"] is None) == (alpha is None)


def _logged() -> tuple[Interactions, np.ndarray, np.ndarray, Batch]:
    """A 4-user log; each user's 13th event, its 12 previous events, make_batch of it."""
    data = load_dataset({"name": "simulator", "n_users": 4, "n_items": 20,
                         "events_per_user": 15})
    events = np.array([data.user_events(u)[12] for u in range(1, 5)])  # the 13th events
    past = np.stack([data.user_events(u)[:12] for u in range(1, 5)])  # [4, 12]
    return data, events, past, make_batch(data, history_index(data, 10)[events], events)


def test_world_lanes_encode_time_exactly_as_training() -> None:
    data, events, past, logged = _logged()
    truth = SimulatorTruth(make_world(SimulatorConfig(n_users=4, n_items=20,
                                                      events_per_user=15)))
    pop = Population(truth, ResponseConfig(k=2), users=np.arange(1, 5),
                     history=data.item[past], hist_times=data.time[past],
                     start=data.time[events], capacity=1, seed=0)
    lanes = lane_batch(pop, data, 10)
    for field in ("hist_items", "hist_gaps", "hist_context", "hist_mask", "context"):
        np.testing.assert_array_equal(getattr(lanes, field).numpy(),
                                      getattr(logged, field).numpy(), err_msg=field)


def test_ab_arms_encode_time_exactly_as_training() -> None:
    data, events, past, logged = _logged()
    n, length, width = 4, 10, data.context.shape[1]
    store = HistoryStore(items=np.zeros((n, length), dtype=np.int64),
                         gaps=np.zeros((n, length), dtype=np.float32),
                         context=np.zeros((n, length, width), dtype=np.float32),
                         last_time=np.full(n, np.nan))
    users = np.arange(n)
    # the A/B simulation's own context rows of the logged steps, then its history update
    context = clock_steps(data.time[past], np.full(n, np.nan))  # [4, 12, Fc]
    np.testing.assert_array_equal(context, data.context[past])
    store.append(users, data.item[past], data.time[past], context)
    next_context = clock_steps(data.time[events][:, None], data.time[past[:, -1]])[:, 0]
    np.testing.assert_array_equal(next_context, data.context[events])
    batch = store.batch(users, np.arange(1, n + 1), next_context)
    for field in dataclasses.fields(logged):
        np.testing.assert_array_equal(getattr(batch, field.name).numpy(),
                                      getattr(logged, field.name).numpy(), err_msg=field.name)
    # a store started from the log holds each consumer's last L steps, encoded as training
    start = HistoryStore.from_log(data, np.arange(1, n + 1), length)
    last = np.stack([data.user_events(u)[-length:] for u in range(1, n + 1)])  # [4, L]
    want = make_batch(data, last, last[:, -1])
    np.testing.assert_array_equal(start.items, want.hist_items.numpy())
    np.testing.assert_array_equal(start.gaps, want.hist_gaps.numpy())
    np.testing.assert_array_equal(start.context, want.hist_context.numpy())
    np.testing.assert_array_equal(start.last_time, data.time[last[:, -1]])


def test_score_batch_in_chunks_equals_one_pass() -> None:
    """Chunks over rows and over candidates change memory, not the result."""
    ranker = _ranker("deepprl")
    assert isinstance(ranker, Recommender)
    data = ranker.data
    events = np.arange(0, data.n_events, 7)[:9]  # [B]
    hist = history_index(data, ranker.model.config.history_length)[events]  # [B, L]
    batch = make_batch(data, hist, events)
    items = torch.randint(1, data.n_items + 1, (len(events), 11))  # [B, C]
    whole = score_batch(ranker.model, ranker.policy, batch, items)
    parts = score_batch(ranker.model, ranker.policy, batch, items, chunk=4, candidate_chunk=3)
    assert parts.scores.shape == whole.scores.shape == (len(events), 11)
    for a, b in ((parts.state, whole.state), (parts.alpha, whole.alpha),
                 (parts.y_hat, whole.y_hat), (parts.scores, whole.scores)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
