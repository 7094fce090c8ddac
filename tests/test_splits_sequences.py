"""Splits (temporal holdout, time-stratified k-fold) and per-event model inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepprl.data.interactions import Interactions
from deepprl.data.sequences import (
    candidate_items,
    fully_observed,
    history_index,
    make_batch,
)
from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.data.splits import Split, temporal_holdout, time_stratified_kfold


def random_log(seed: int = 0, n_users: int = 12, n_items: int = 15, max_events: int = 14,
               ties: bool = True) -> Interactions:
    """A small logged (not fully observed) log, sorted by (user, time), with uneven users."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_events + 1, size=n_users)
    counts[0] = 1  # a user with a single event
    counts[1] = 2
    user = np.repeat(np.arange(1, n_users + 1), counts)
    n = len(user)
    if ties:
        time = rng.integers(0, 50, size=n).astype(np.float64) * 3600.0
    else:
        time = rng.permutation(n * 10)[:n].astype(np.float64) * 600.0
    order = np.lexsort((time, user))
    user, time = user[order], time[order]
    item = rng.integers(1, n_items + 1, size=n)
    objectives = rng.random((n, 2)).astype(np.float32)
    return Interactions(
        name="random", objective_names=("a", "b"), user=user.astype(np.int64),
        item=item.astype(np.int64), time=time, objectives=objectives,
        reward=objectives.mean(1), context=rng.normal(size=(n, 3)).astype(np.float32),
        user_features=np.zeros((n_users + 1, 0), dtype=np.float32),
        item_features=np.zeros((n_items + 1, 0), dtype=np.float32),
        user_ids=tuple(f"u{u}" for u in range(1, n_users + 1)),
        item_ids=tuple(f"i{i}" for i in range(1, n_items + 1)),
    )


def per_user(data: Interactions) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for e, u in enumerate(data.user.tolist()):
        out.setdefault(u, []).append(e)
    return out


# -- temporal holdout ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("test_fraction", "valid_fraction"), [(0.2, 0.0), (0.3, 0.1),
                                                               (0.5, 0.25)])
def test_temporal_holdout_matches_brute_force(seed: int, test_fraction: float,
                                              valid_fraction: float) -> None:
    data = random_log(seed)
    split = temporal_holdout(data, test_fraction=test_fraction, valid_fraction=valid_fraction)
    assert not (split.train & split.test).any()
    assert not (split.train & split.valid).any()
    assert not (split.valid & split.test).any()
    assert (split.train | split.test | split.valid).all()
    for events in per_user(data).values():
        n = len(events)
        n_test = 0 if n == 1 else max(1, round(n * test_fraction))
        n_valid = round(n * valid_fraction) if n > 2 else 0
        expected_test = events[n - n_test:]
        expected_valid = events[n - n_test - n_valid:n - n_test]
        assert np.flatnonzero(split.test[events]).tolist() == list(
            range(n - n_test, n)), (n, n_test)
        assert [e for e in events if split.test[e]] == expected_test
        assert [e for e in events if split.valid[e]] == expected_valid
        train = [e for e in events if split.train[e]]
        assert len(train) == n - n_test - n_valid
        # per user, test events are the latest, validation sits between
        if train and expected_test:
            assert max(data.time[train]) <= min(data.time[expected_test])
        if train and expected_valid:
            assert max(data.time[train]) <= min(data.time[expected_valid])


def test_temporal_holdout_hand_computed() -> None:
    data = random_log(0)
    split = temporal_holdout(data, test_fraction=0.2)
    events = per_user(data)
    # the single-event user only trains; the two-event user tests its last event
    assert split.train[events[1]].all()
    assert split.test[events[2]].tolist() == [False, True]
    # overall test share is close to 0.2 (rounding per user)
    big = [u for u, ev in events.items() if len(ev) >= 5]
    share = np.mean([split.test[events[u]].mean() for u in big])
    assert share == pytest.approx(0.2, abs=0.08)


def test_temporal_holdout_ten_events() -> None:
    data = load_simulator(SimulatorConfig(n_users=3, n_items=10, events_per_user=10))
    split = temporal_holdout(data, test_fraction=0.2, valid_fraction=0.1)
    for u in range(3):
        np.testing.assert_array_equal(split.test[u * 10:(u + 1) * 10], [0] * 8 + [1] * 2)
        np.testing.assert_array_equal(split.valid[u * 10:(u + 1) * 10], [0] * 7 + [1] + [0] * 2)
        np.testing.assert_array_equal(split.train[u * 10:(u + 1) * 10], [1] * 7 + [0] * 3)


@pytest.mark.parametrize(("test_fraction", "valid_fraction"),
                         [(0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1)])
def test_temporal_holdout_rejects_bad_fractions(test_fraction: float,
                                                valid_fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        temporal_holdout(random_log(0), test_fraction=test_fraction,
                         valid_fraction=valid_fraction)


def test_split_rejects_overlap() -> None:
    a = np.array([True, False])
    with pytest.raises(ValueError, match="overlap"):
        Split(train=a, test=a, valid=np.zeros(2, dtype=bool))


# -- time-stratified k-fold ----------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_partitions_and_stratifies_time(k: int) -> None:
    data = random_log(4, n_users=20, max_events=20, ties=False)
    folds = time_stratified_kfold(data, k=k, seed=3)
    assert len(folds) == k
    tests = np.stack([f.test for f in folds])
    # every event is tested in exactly one fold; train is the complement; no validation
    np.testing.assert_array_equal(tests.sum(0), 1)
    for f in folds:
        np.testing.assert_array_equal(f.train, ~f.test)
        assert not f.valid.any()
    sizes = tests.sum(1)
    assert sizes.max() - sizes.min() <= 1
    # blocks of k consecutive events in time deal one event to each fold
    order = np.argsort(data.time, kind="stable")
    fold_of = np.argmax(tests, axis=0)
    n_full = data.n_events // k
    for b in range(n_full):
        assert sorted(fold_of[order[b * k:(b + 1) * k]].tolist()) == list(range(k))
    # so each fold spans the time range: it has an event among the first and last k
    for f in range(k):
        times = data.time[folds[f].test]
        assert times.min() <= data.time[order[k - 1]]
        assert times.max() >= data.time[order[n_full * k - k]]
    # and the folds' time distributions are alike
    medians = [np.median(data.time[f.test]) for f in folds]
    assert np.ptp(medians) < 0.1 * np.ptp(data.time)


def test_kfold_seeded() -> None:
    data = random_log(5, n_users=15)
    a = time_stratified_kfold(data, k=4, seed=1)
    b = time_stratified_kfold(data, k=4, seed=1)
    c = time_stratified_kfold(data, k=4, seed=2)
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.test, fb.test)
    assert any(not np.array_equal(fa.test, fc.test) for fa, fc in zip(a, c, strict=True))


def test_kfold_rejects_k_below_two() -> None:
    with pytest.raises(ValueError, match="k must be >= 2, got 1"):
        time_stratified_kfold(random_log(0), k=1)


# -- history index -------------------------------------------------------------------------

def naive_history(data: Interactions, length: int) -> np.ndarray:
    out = np.full((data.n_events, length), -1, dtype=np.int64)
    for e in range(data.n_events):
        earlier = [j for j in range(e) if data.user[j] == data.user[e]]
        earlier = earlier[-length:]
        for pos, j in enumerate(earlier):
            out[e, length - len(earlier) + pos] = j
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("length", [1, 3, 10])
def test_history_index_matches_naive_loop(seed: int, length: int) -> None:
    data = random_log(seed)
    hist = history_index(data, length)
    assert hist.shape == (data.n_events, length)
    np.testing.assert_array_equal(hist, naive_history(data, length))


def test_history_index_properties() -> None:
    data = random_log(7)
    hist = history_index(data, 5)
    for e in range(data.n_events):
        row = hist[e]
        real = row[row >= 0]
        # left padding only: once a real step appears, the rest are real
        assert (row[: 5 - len(real)] == -1).all()
        # same user, strictly earlier, oldest first, consecutive
        assert (data.user[real] == data.user[e]).all()
        assert (real < e).all()
        assert (np.diff(real) == 1).all()
        if len(real):
            assert real[-1] == e - 1
    starts = np.flatnonzero(np.r_[True, data.user[1:] != data.user[:-1]])
    assert (hist[starts] == -1).all()


def test_history_index_hand_computed() -> None:
    data = load_simulator(SimulatorConfig(n_users=2, n_items=4, events_per_user=3))
    np.testing.assert_array_equal(history_index(data, 2), [
        [-1, -1], [-1, 0], [0, 1],
        [-1, -1], [-1, 3], [3, 4],
    ])


# -- batches -------------------------------------------------------------------------------

def test_make_batch_shapes_and_masks() -> None:
    data = random_log(2)
    L = 4
    hist = history_index(data, L)
    events = np.arange(0, data.n_events, 3)
    batch = make_batch(data, hist[events], events)
    B = len(events)
    assert len(batch) == B
    assert batch.user.shape == (B,)
    assert batch.user.dtype == torch.int64
    assert batch.hist_items.shape == (B, L)
    assert batch.hist_items.dtype == torch.int64
    assert batch.hist_gaps.shape == (B, L)
    assert batch.hist_gaps.dtype == torch.float32
    assert batch.hist_context.shape == (B, L, 3)
    assert batch.hist_context.dtype == torch.float32
    assert batch.hist_mask.shape == (B, L)
    assert batch.hist_mask.dtype == torch.bool
    assert batch.context.shape == (B, 3)
    np.testing.assert_array_equal(batch.user.numpy(), data.user[events])
    np.testing.assert_array_equal(batch.context.numpy(), data.context[events])
    mask = batch.hist_mask.numpy()
    np.testing.assert_array_equal(mask, hist[events] >= 0)
    for b, e in enumerate(events):
        for j in range(L):
            h = hist[e, j]
            if h < 0:
                assert batch.hist_items[b, j] == 0
                assert batch.hist_gaps[b, j] == 0
                assert (batch.hist_context[b, j] == 0).all()
                continue
            assert batch.hist_items[b, j] == data.item[h]
            np.testing.assert_allclose(batch.hist_context[b, j].numpy(), data.context[h])
            # gap: hours between that step and the user's event before it (0 for the first)
            gap = 0.0
            if h > 0 and data.user[h - 1] == data.user[h]:
                gap = (data.time[h] - data.time[h - 1]) / 3600.0
            assert batch.hist_gaps[b, j].item() == pytest.approx(np.log1p(gap), abs=1e-6)


def test_make_batch_hand_built_history() -> None:
    # an event not yet logged: history built by hand from user 3's last two events
    data = random_log(1)
    ev = data.user_events(3)
    assert len(ev) >= 3
    hist = np.array([[-1, ev[-2], ev[-1]]])
    batch = make_batch(data, hist, np.array([ev[-1]]))
    assert batch.hist_mask.tolist() == [[False, True, True]]
    assert batch.hist_items[0].tolist() == [0, int(data.item[ev[-2]]), int(data.item[ev[-1]])]
    gap = (data.time[ev[-1]] - data.time[ev[-2]]) / 3600.0
    assert batch.hist_gaps[0, 2].item() == pytest.approx(np.log1p(gap), abs=1e-6)


# -- candidates ----------------------------------------------------------------------------

def test_candidate_items_logged_data() -> None:
    data = random_log(3)
    assert not fully_observed(data)
    split = temporal_holdout(data, test_fraction=0.5)
    events = np.flatnonzero(split.test)
    cands = candidate_items(data, events, split.test)
    assert cands.shape[0] == len(events)
    for row, e in zip(cands, events, strict=True):
        u = data.user[e]
        expected = sorted({int(data.item[j]) for j in range(data.n_events)
                           if data.user[j] == u and split.test[j]})
        real = row[row > 0].tolist()
        assert real == expected
        assert (row[len(real):] == 0).all()  # 0-padded on the right
    widths = [len({int(data.item[j]) for j in data.user_events(u) if split.test[j]})
              for u in np.unique(data.user[events])]
    assert cands.shape[1] == max(widths)


def test_candidate_items_pool_is_respected() -> None:
    data = random_log(3)
    pool = np.zeros(data.n_events, dtype=bool)
    ev = data.user_events(5)
    pool[ev[:2]] = True
    cands = candidate_items(data, np.array([ev[-1]]), pool)
    assert cands[0][cands[0] > 0].tolist() == sorted({int(data.item[ev[0]]),
                                                      int(data.item[ev[1]])})
    # a user with nothing in the pool gets an all-padding row
    other = data.user_events(6)
    empty = candidate_items(data, np.array([other[0]]), pool)
    assert (empty == 0).all()


def test_candidate_items_subsampled_and_seeded() -> None:
    data = random_log(6, n_items=40, max_events=30)
    pool = np.ones(data.n_events, dtype=bool)
    events = np.arange(data.n_events)
    full = candidate_items(data, events, pool)
    sub = candidate_items(data, events, pool, max_candidates=3, seed=9)
    again = candidate_items(data, events, pool, max_candidates=3, seed=9)
    np.testing.assert_array_equal(sub, again)
    assert sub.shape[1] <= 3
    for f_row, s_row in zip(full, sub, strict=True):
        real = s_row[s_row > 0]
        assert set(real.tolist()) <= set(f_row[f_row > 0].tolist())
        assert len(real) == min(3, int((f_row > 0).sum()))
        assert (np.diff(real) > 0).all()


def test_candidate_items_simulator_is_every_item() -> None:
    data = load_simulator(SimulatorConfig(n_users=6, n_items=9, events_per_user=3))
    assert fully_observed(data)
    events = np.array([0, 5, 17])
    pool = np.zeros(data.n_events, dtype=bool)  # ignored: ground truth is known everywhere
    cands = candidate_items(data, events, pool, max_candidates=2)
    assert cands.shape == (3, 9)
    np.testing.assert_array_equal(cands, np.tile(np.arange(1, 10), (3, 1)))
    cands[0, 0] = 99  # a writable copy, not a view of shared memory
    assert candidate_items(data, events, pool)[1, 0] == 1
