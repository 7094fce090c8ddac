"""Table 5 and Figure 7: every method's Pareto front, its volumes, and DeepPRL's point
against each front (paper §5.4, DESIGN §3)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from deepprl.config import RunConfig
from deepprl.eval.pareto import pareto_mask
from deepprl.experiments.frontier import RunResult, front_volumes
from deepprl.experiments.results import Results
from deepprl.report import md_table
from deepprl.zoo import configure

FRONT_PROTOCOL = (
    "Frontier protocol (paper §5.4): every static-weight method is evaluated with "
    "α₁ ∈ {0, 0.1, …, 1} (a simplex grid of step 0.1 beyond two objectives), each α's "
    "objectives averaged over seeds; DeepPRL, whose weights are chosen per user and "
    "context, contributes one point per network initialisation (seed); single-objective "
    "methods one point per seed. The oracle front ranks by the true objective values "
    "with the same α grid (fully known on the simulator and movielens-sim; on a log, the "
    "logged values of the "
    "candidates: an upper bound). Hypervolume uses one fixed reference point per dataset: "
    "for each objective, the worst top-K mean any ranking reaches (so every method's points "
    "count); convex-hull volume is the hull of the region the points dominate above that "
    "reference; both are also given as a fraction of the oracle front's.")


def method_fronts(res: Results, models: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Objective points [N, K] of every method's front, plus DeepPRL's own predictor swept
    with static weights and the oracle front."""
    k = len(res.objectives)
    fronts: dict[str, np.ndarray] = {}
    for m in models:
        runs = res.runs[m]
        if static_weights(m, runs[0]):
            fronts[m] = np.mean([r.sweep[:, :k] for r in runs if r.sweep is not None], axis=0)
        else:
            fronts[m] = res.points(m)[:, :k]
    lead = next(m for m in models if res.runs[m][0].mean_weights is not None
                and not static_weights(m, res.runs[m][0]))
    fronts[f"{lead} predictor, static sweep"] = np.mean(
        [r.sweep[:, :k] for r in res.runs[lead] if r.sweep is not None], axis=0)
    fronts["oracle"] = np.mean([r.oracle_sweep[:, :k] for r in res.runs[lead]], axis=0)
    return fronts


def static_weights(model: str, run: RunResult) -> bool:
    """Does the method rank with one static weight vector (so it is swept)?"""
    if run.sweep is None:
        return False
    if run.mean_weights is None:  # an item-level baseline with tunable static weights
        return True
    return configure(model, RunConfig(dataset={})).policy.algorithm == "static"


def volume_table(res: Results, fronts: dict[str, np.ndarray]) -> tuple[dict[str, Any], str]:
    ref = res.ref
    oracle = front_volumes(fronts["oracle"], ref)
    volumes = {m: front_volumes(points, ref) for m, points in fronts.items()}
    rows = []
    for m, v in sorted(volumes.items(), key=lambda kv: -kv[1]["hypervolume"]):
        v["hv_fraction_of_oracle"] = v["hypervolume"] / oracle["hypervolume"] \
            if oracle["hypervolume"] > 0 else float("nan")
        v["hull_fraction_of_oracle"] = v["hull_volume"] / oracle["hull_volume"] \
            if oracle["hull_volume"] > 0 else float("nan")
        rows.append([f"`{m}`" if m in res.runs else m, len(fronts[m]), v["hypervolume"],
                     v["hv_fraction_of_oracle"], v["hull_volume"],
                     v["hull_fraction_of_oracle"]])
    text = md_table(["front", "points", "hypervolume", "HV / oracle", "hull volume",
                     "hull / oracle"], rows, digits=5)
    rounded = np.round(ref.astype(np.float64), 4).tolist()
    text += f"\n\nReference point: {dict(zip(res.objectives, rounded, strict=True))}."
    return volumes, text


def beyond_table(res: Results, ours: str = "deepprl") -> str:
    """Per seed: is DeepPRL's point dominated by no point of each method's swept front (of
    that seed)? And does it dominate at least one?"""
    k = len(res.objectives)
    rows = []
    for m, runs in res.runs.items():
        if m == ours or not static_weights(m, runs[0]):
            continue
        beyond = dominates = 0
        for mine, theirs in zip(res.runs[ours], runs, strict=True):
            assert theirs.sweep is not None
            point = mine.point[:k]
            stack = np.vstack([point, theirs.sweep[:, :k]])
            beyond += bool(pareto_mask(stack)[0])
            dominates += bool(((point >= theirs.sweep[:, :k]).all(1)
                               & (point > theirs.sweep[:, :k]).any(1)).any())
        rows.append([f"`{m}`", f"{beyond} / {res.seeds}", f"{dominates} / {res.seeds}"])
    if not rows:
        return "No static-weight method to compare with."
    return md_table(["static-weight front", f"{ours} not dominated by it",
                     f"{ours} dominates one of its points"], rows)


def plot_fronts(res: Results, fronts: dict[str, np.ndarray], dataset: str) -> Figure:
    """The fronts in the plane of two objectives; with K >= 3, one panel per pair of
    objectives (projections of the K-dimensional points: a point dominated in K dimensions
    may look undominated in a projection, so the hypervolume tables are the verdict)."""
    pairs = list(combinations(range(len(res.objectives)), 2))
    fig = Figure(figsize=(7.5 * min(len(pairs), 3), 5.5 * -(-len(pairs) // 3)))
    for n, (i, j) in enumerate(pairs):
        ax = fig.add_subplot(-(-len(pairs) // 3), min(len(pairs), 3), n + 1)
        _plot_pair(ax, res, fronts, i, j, projected=len(pairs) > 1)
        ax.set_title(f"{dataset}: top-K means of the objectives"
                     + (f" ({res.objectives[i]}, {res.objectives[j]})" if len(pairs) > 1
                        else ""))
        if n == 0:
            ax.legend(fontsize=7, loc="best")
    return fig


def _plot_pair(ax: Axes, res: Results, fronts: dict[str, np.ndarray], i: int, j: int, *,
               projected: bool) -> None:
    """Every method's points on objectives i (x) and j (y). A projected sweep (K >= 3) is
    a cloud, not a curve: its points are drawn unjoined, and the oracle as the front of its
    projection."""
    x, y = res.objectives[i], res.objectives[j]
    for m, points in fronts.items():
        order = np.argsort(points[:, i])
        if m == "oracle":
            if projected:
                front = points[pareto_mask(points[:, [i, j]])]
                order = np.argsort(front[:, i])
                points = front
            ax.plot(points[order, i], points[order, j], "k--", lw=1.2, label="oracle front")
        elif m == "deepprl":
            ax.scatter(points[:, i], points[:, j], marker="*", s=160, c="crimson",
                       zorder=5, label="DeepPRL (per seed)")
        elif len(points) > res.seeds:
            ax.plot(points[order, i], points[order, j], marker="o", ms=3,
                    lw=0 if projected else 1, label=m, ls=":" if "predictor" in m else "-")
        else:
            ax.scatter(points[:, i], points[:, j], marker="^", s=40, label=m)
    best = oracle_reward_point(res)
    ax.scatter([best[i]], [best[j]], marker="P", s=90, c="black", zorder=5,
               label="oracle: rank by each user's true reward")
    static = [m["static"]["objectives"] for m in res.metrics.get("deepprl", []) if "static" in m]
    if static:
        point = np.mean([[v[x], v[y]] for v in static], axis=0)
        ax.scatter([point[0]], [point[1]], marker="D", s=60, facecolors="none",
                   edgecolors="crimson", zorder=5,
                   label="DeepPRL's predictor, best static α (validation)")
    ax.scatter([res.ref[i]], [res.ref[j]], marker="x", c="grey", label="reference point")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)


def oracle_reward_point(res: Results) -> np.ndarray:
    """Mean objectives [K] of ranking by each user's true reward (mean over seeds)."""
    k = len(res.objectives)
    return np.mean([r.oracle[:k] for r in next(iter(res.runs.values()))], axis=0)


def personal_tradeoff_line(res: Results, fronts: dict[str, np.ndarray]) -> str:
    """Is the ranking that maximises each user's own reward on the aggregate front? When
    it is not, dominating fronts of mean objectives is not what personalisation buys."""
    best = oracle_reward_point(res)
    inside = not pareto_mask(np.vstack([best, fronts["oracle"]]))[0]
    where = "inside the oracle front (a static α dominates it)" if inside else \
        "on or beyond the oracle front"
    return (f"The ranking by each user's TRUE reward reaches mean objectives "
            f"{np.round(best.astype(np.float64), 4).tolist()}, which lies {where}. "
            + ("Averaged objectives reward one global trade-off; a method that serves each "
               "user's own trade-off, as DeepPRL tries to, is judged by the reward column, "
               "not by dominating these fronts." if inside else ""))
