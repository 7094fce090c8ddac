"""Pareto tooling. Every objective is maximised here; moocore, which minimises by default,
is told so through its `maximise` flag in this module only (the one place of the flip).

Points are arrays [N, K]; a point dominates another when it is >= in every objective and
> in at least one. Duplicates of a non-dominated point are all kept.
"""

from __future__ import annotations

import itertools

import moocore
import numpy as np
from scipy.spatial import ConvexHull, QhullError


def _points(points: np.ndarray | list[list[float]]) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"points must be a 2-D array [N, K], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("points must be finite")
    return array


def pareto_mask(points: np.ndarray | list[list[float]]) -> np.ndarray:
    """bool [N]: True where no other point dominates the point (maximisation)."""
    array = _points(points)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(array, maximise=True, keep_weakly=True))


def hypervolume(points: np.ndarray | list[list[float]], ref: np.ndarray | list[float]
                ) -> float:
    """Volume dominated by the points and above the reference point `ref` [K] (maximisation).
    Points not strictly above `ref` in every objective add nothing."""
    array = _points(points)
    reference = np.asarray(ref, dtype=np.float64)
    if reference.shape != (array.shape[1],):
        raise ValueError(f"ref must have {array.shape[1]} coordinates, got {reference.shape}")
    above = array[(array > reference).all(axis=1)]
    if len(above) == 0:
        return 0.0
    return float(moocore.hypervolume(above, ref=reference, maximise=True))


def convex_hull_volume(points: np.ndarray | list[list[float]]) -> float:
    """Volume (area in 2-D) of the convex hull of the points, as in paper Table 5; 0 when the
    points span less than K dimensions (fewer than K + 1 points, or all on a hyperplane)."""
    array = np.unique(_points(points), axis=0)
    if len(array) <= array.shape[1]:
        return 0.0
    try:
        return float(ConvexHull(array).volume)
    except QhullError:  # degenerate: collinear / coplanar points enclose no volume
        return 0.0


def dominated_hull_volume(points: np.ndarray | list[list[float]],
                          ref: np.ndarray | list[float]) -> float:
    """Convex-hull volume of the region the points dominate above `ref` (paper Table 5):
    the hull of the points and the corners of their boxes down to ref. Unlike the hull of
    the points alone, it is not zero for a front of one or two points. A point on ref in
    some objective still stretches the hull along the others; one below ref adds nothing."""
    array, reference = _points(points), np.asarray(ref, dtype=np.float64)
    above = array[(array >= reference).all(1)]
    if len(above) == 0:
        return 0.0
    corners = [np.where(mask, above, reference) for mask in
               itertools.product([True, False], repeat=array.shape[1])]
    return convex_hull_volume(np.concatenate(corners))
