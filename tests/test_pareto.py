"""Pareto tooling against brute force and hand-made fronts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deepprl.eval.pareto import (
    convex_hull_volume,
    dominated_hull_volume,
    hypervolume,
    pareto_mask,
)


def brute_mask(points: np.ndarray) -> np.ndarray:
    n = len(points)
    return np.array([not any((points[j] >= points[i]).all() and (points[j] > points[i]).any()
                             for j in range(n) if j != i) for i in range(n)])


def brute_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Sum of the grid cells (cut at every coordinate) whose upper corner some point
    dominates."""
    above = points[(points > ref).all(axis=1)]
    if len(above) == 0:
        return 0.0
    axes = [np.unique(np.r_[ref[d], above[:, d]]) for d in range(points.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        upper = np.array([axes[d][c + 1] for d, c in enumerate(cell)])
        if (above >= upper).all(axis=1).any():
            total += float(np.prod([axes[d][c + 1] - axes[d][c] for d, c in enumerate(cell)]))
    return total


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_brute_force(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = np.round(rng.random((40, k)), 1)  # rounding makes ties and duplicates
    np.testing.assert_array_equal(pareto_mask(points), brute_mask(points))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_brute_force(k: int, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    points = rng.random((12, k))
    ref = np.full(k, 0.1)
    assert hypervolume(points, ref) == pytest.approx(brute_hypervolume(points, ref), abs=1e-12)


def test_hand_made_fronts() -> None:
    # two boxes of 1x2 and 2x1 overlapping in a 1x1 square: 2 + 2 - 1
    assert hypervolume([[1.0, 2.0], [2.0, 1.0]], [0.0, 0.0]) == pytest.approx(3.0)
    # a dominated point adds nothing; a point below the reference adds nothing
    assert hypervolume([[1.0, 2.0], [2.0, 1.0], [0.5, 0.5], [-1.0, 5.0]],
                       [0.0, 0.0]) == pytest.approx(3.0)
    assert hypervolume([[0.5, 0.5, 0.5]], [0.0, 0.0, 0.0]) == pytest.approx(0.125)
    assert hypervolume([[0.0, 1.0]], [0.0, 0.0]) == 0.0  # on the reference: nothing
    np.testing.assert_array_equal(pareto_mask([[1, 2], [2, 1], [1, 1], [2, 1]]),
                                  [True, True, False, True])


def test_convex_hull_volume() -> None:
    assert convex_hull_volume([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]]) \
        == pytest.approx(1.0)
    assert convex_hull_volume([[0, 0], [1, 0], [0, 1]]) == pytest.approx(0.5)
    assert convex_hull_volume([[0, 0], [1, 1], [2, 2]]) == 0.0  # collinear
    assert convex_hull_volume([[0, 0], [1, 1]]) == 0.0
    cube = np.array(list(itertools.product([0.0, 2.0], repeat=3)))
    assert convex_hull_volume(cube) == pytest.approx(8.0)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[np.nan, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="coordinates"):
        hypervolume([[1.0, 1.0]], [0.0])


def test_dominated_hull_counts_a_point_on_the_reference() -> None:
    # (0, 1) lies on ref in x: alone it encloses nothing, with (1, 0.5) it adds a triangle
    ref = np.zeros(2)
    assert dominated_hull_volume(np.array([[0.0, 1.0]]), ref) == 0.0
    both = dominated_hull_volume(np.array([[0.0, 1.0], [1.0, 0.5]]), ref)
    assert both == pytest.approx(0.5 + 0.25)  # square 1 x 0.5 plus triangle (0,.5)-(1,.5)-(0,1)
