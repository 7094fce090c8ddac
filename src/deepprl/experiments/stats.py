"""Significance as the paper reports it: paired tests against the best baseline, stars.

Two paired tests, both two-sided:
- over runs (seeds / initialisations): the paper's unit of repetition; few pairs, so it is
  the conservative one and the stars come from it;
- over test events (pooled over runs; both methods ranked the same events): many pairs,
  but it treats each trained model as fixed, so it only says the gap is not event noise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def stars(p: float) -> str:
    """*** p < 0.01, ** p < 0.05, * p < 0.1 (paper tables)."""
    if not math.isfinite(p):
        return ""
    return "***" if p < 0.01 else "**" if p < 0.05 else "*" if p < 0.1 else ""


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value of a vs b; NaN with fewer than two pairs or no
    variation in the differences."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = a - b
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return float("nan")
    return float(stats.ttest_rel(a, b).pvalue)


def improvement(ours: float, other: float) -> float:
    """Relative improvement of ours over other, in percent."""
    return 100.0 * (ours - other) / abs(other) if other else float("nan")


def mean_std(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0
