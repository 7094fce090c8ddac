"""Figure 8: the Pareto front of single consumers (paper §5.5), where each user's own
optimum is known.

The paper picks one consumer of Alibaba-Youku and draws, on that consumer's events, the
front of the Pareto optimum and the points DeepPRL and its variants without dynamic
updating / context reach. Ours, on a world whose ground truth is fully known (the
simulator, movielens-sim), for a small panel of users chosen by a stated rule
(`select_users`), on each user's own test events only:
- the user's front: the true objectives ranked with every static alpha of the simplex grid;
- the user's optimum: every event ranked by the user's TRUE utility (on the simulator
  sum_k w_uk(h) o_k with the hidden, hour-dependent preference w; on movielens-sim the
  calibrated rating), the most any ranking can give this user;
- the points of DeepPRL and its three Table-6 variants (their cached runs, every seed),
  and the static-alpha sweep of DeepPRL's own predictor (seed 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepprl.artifacts import load_run, run_split
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.simulator import SimulatorValuer
from deepprl.eval.evaluator import EvalSet, build_eval_set
from deepprl.eval.pareto import pareto_mask
from deepprl.experiments.context import Context
from deepprl.experiments.frontier import (
    mean_point,
    oracle_point,
    oracle_sweep,
    top_values,
    weight_grid,
)
from deepprl.experiments.offline import TABLE6_MODELS
from deepprl.experiments.results import Results, data_line, run_models
from deepprl.report import Report, md_table

N_USERS = 4
MIN_EVENTS = 10
"""A user needs this many test events (with more than k candidates) in every repetition to be
picked."""
MIN_EVENTS_QUICK = 4
OURS = TABLE6_MODELS[0]


def select_users(users: np.ndarray, weight: np.ndarray, counts: np.ndarray, *,
                 n: int = N_USERS, min_events: int = MIN_EVENTS) -> np.ndarray:
    """The rule: among the users with at least `min_events` test events, sorted by their
    weight on the first objective (ties: by user index), the user at each quantile
    (j + 0.5) / n, j = 0..n-1, of that order: n distinct users spread over the
    preference, lowest weight first. users, weight, counts: [U] -> [n] user indices."""
    eligible = counts >= min_events
    if eligible.sum() < n:
        raise ValueError(f"figure 8 needs {n} users with at least {min_events} test "
                         f"events; only {int(eligible.sum())} of {len(users)} have them (use "
                         "more data or a larger eval.max_events)")
    order = np.lexsort((users[eligible], weight[eligible]))  # by weight, then user
    picks = np.round((np.arange(n) + 0.5) / n * (len(order) - 1)).astype(int)
    return users[eligible][order[picks]]


def restrict(eval_set: EvalSet, rows: np.ndarray) -> EvalSet:
    """The evaluation set's events `rows` only (e.g. one user's)."""
    return dataclasses.replace(
        eval_set, events=eval_set.events[rows], items=eval_set.items[rows],
        valid=eval_set.valid[rows], objectives=eval_set.objectives[rows],
        reward=eval_set.reward[rows], total=len(rows))


def preference_weights(data: Interactions, eval_set: EvalSet, k: int) -> np.ndarray:
    """[E] each event's weight on the first objective in the user's true preference: the
    hidden w_u1(h) on the simulator; elsewhere (a utility that is not a weighting of the
    objectives) the revealed one: the mean alpha_1 of the grid alphas whose ranking of the
    TRUE objectives earns the most true reward at that event (ties: every such alpha)."""
    if isinstance(data.valuer, SimulatorValuer):
        return data.valuer.oracle_weights(data, eval_set.events)[:, 0]
    grid = weight_grid(data.n_objectives)
    truth = np.nan_to_num(eval_set.objectives)
    rewards = np.stack([top_values(eval_set, truth @ a, k)[1] for a in grid])  # [A, E]
    best = rewards == rewards.max(0)  # [A, E]; equal top-k sets give equal rewards
    return (best * grid[:, :1]).sum(0) / best.sum(0)


def test_sets(res: Results, data: Interactions) -> list[EvalSet]:
    """Per repetition, every test event with more than k candidates (no subsample: a user's
    panel needs all of their events), the candidates as every evaluation draws them."""
    sets: dict[bytes, EvalSet] = {}
    out = []
    for config in res.configs:
        split = run_split(data, config)
        key = split.test.tobytes()  # the hold-out's test period is the same for every seed
        if key not in sets:
            sets[key] = build_eval_set(data, split, k=config.eval.k)
        out.append(sets[key])
    return out


def user_front(eval_set: EvalSet, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """On the events `rows` only: the front of static alpha ranking the TRUE objectives
    [A, K + 1] and the optimum, ranking by the true utility [K + 1] (objectives, utility)."""
    mine = restrict(eval_set, rows)
    return oracle_sweep(mine, k), oracle_point(mine, k)


def method_values(res: Results, data: Interactions, sets: list[EvalSet], picked: np.ndarray,
                  k: int) -> tuple[list[EvalSet], dict[str, list[np.ndarray]], np.ndarray | None]:
    """Every run of every method ranks the picked users' test events of its repetition.
    Returns those events per repetition, per method and repetition the per-event points
    [E_s, K + 1] (top-k mean objectives, utility), and the y_hat [E_0, C, K] of the first
    DeepPRL run (its predictor, swept with static alpha on each user's panel)."""
    subs = [restrict(es, np.flatnonzero(np.isin(data.user[es.events], picked))) for es in sets]
    values: dict[str, list[np.ndarray]] = {m: [] for m in res.runs}
    y_hat = None
    for m, paths in res.paths.items():
        for s, path in enumerate(paths):
            _, ranker = load_run(path)
            sub = subs[s]
            objectives, reward = top_values(sub, ranker.scores(sub.events, sub.items), k)
            values[m].append(np.column_stack([objectives, reward]))
            if m == OURS and s == 0:
                y_hat = ranker.objective_scores(sub.events, sub.items)
    return subs, values, y_hat


def user_view(data: Interactions, subs: list[EvalSet], values: dict[str, list[np.ndarray]],
              y_hat: np.ndarray | None, user: int, k: int) -> dict[str, Any]:
    """One user's front, optimum and method points (each repetition on that user's events;
    front and optimum averaged over repetitions). A point is [K + 1]: the top-k mean of
    each objective, then the utility (true reward)."""
    fronts, optima, events = [], [], []
    points: dict[str, list[np.ndarray]] = {m: [] for m in values}
    for s, sub in enumerate(subs):
        rows = np.flatnonzero(data.user[sub.events] == user)
        front, optimum = user_front(sub, rows, k)
        fronts.append(front)
        optima.append(optimum)
        events.append(len(rows))
        for m, per_rep in values.items():
            points[m].append(per_rep[s][rows].mean(0))
    out: dict[str, Any] = {"front": np.mean(fronts, 0), "optimum": np.mean(optima, 0),
                           "points": {m: np.stack(p) for m, p in points.items()},
                           "events": events}
    if y_hat is not None:
        rows = np.flatnonzero(data.user[subs[0].events] == user)
        mine, predicted = restrict(subs[0], rows), y_hat[rows].astype(np.float64)
        out["predictor_front"] = np.stack([mean_point(mine, predicted @ a, k)
                                           for a in weight_grid(data.n_objectives)])
    return out


def distances(view: dict[str, Any], n_objectives: int) -> dict[str, dict[str, Any]]:
    """Per method: its mean point over seeds, the Euclidean distance of each seed's point to
    the user's optimum in objective space (mean), its utility as a fraction of the optimum's
    (mean), and in how many seeds the user's static front dominates its point."""
    opt, front = view["optimum"], view["front"][:, :n_objectives]
    out = {}
    for m, pts in view["points"].items():
        gap = np.linalg.norm(pts[:, :n_objectives] - opt[:n_objectives], axis=1)  # [S]
        dominated = sum(not pareto_mask(np.vstack([p[:n_objectives], front]))[0] for p in pts)
        out[m] = {"mean": pts.mean(0), "std": pts.std(0, ddof=1) if len(pts) > 1
                  else np.zeros(pts.shape[1]), "distance": float(gap.mean()),
                  "utility_fraction": float((pts[:, -1] / opt[-1]).mean()),
                  "dominated_by_front": int(dominated), "seeds": len(pts)}
    return out


def user_table(view: dict[str, Any], scores: dict[str, dict[str, Any]],
               objectives: tuple[str, ...]) -> str:
    """One row per method, plus the user's optimum and best static alpha in hindsight."""
    k = len(objectives)
    opt, front = view["optimum"], view["front"]
    best = front[front[:, -1].argmax()]
    alpha = weight_grid(k)[front[:, -1].argmax()]
    rows: list[list[Any]] = [
        ["user's optimum: rank by the true utility", *opt.tolist(), 1.0, 0.0, "—"],
        [f"best static α in hindsight ({', '.join(f'{a:.1f}' for a in alpha)}), true "
         "objectives", *best.tolist(), float(best[-1] / opt[-1]),
         float(np.linalg.norm(best[:k] - opt[:k])), "on it"]]
    for m, sc in scores.items():
        cells = [f"{mu:.4f} ± {sd:.4f}" if sc["seeds"] > 1 else f"{mu:.4f}"
                 for mu, sd in zip(sc["mean"], sc["std"], strict=True)]
        rows.append([f"`{m}`", *cells, sc["utility_fraction"], sc["distance"],
                     f"{sc['dominated_by_front']} / {sc['seeds']}"])
    return md_table(["method", *objectives, "utility", "utility / optimum",
                     "distance to optimum", "dominated by the user's front"], rows)


def _candidates(data: Interactions, sets: list[EvalSet], k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """users [U] of the first repetition's test events, their mean true weight on the first
    objective there, and their fewest test events over the repetitions."""
    users = data.user[sets[0].events]
    weight = preference_weights(data, sets[0], k)  # [E]
    ids = np.unique(users)
    mean_weight = np.array([weight[users == u].mean() for u in ids])
    counts = np.min([[int((data.user[es.events] == u).sum()) for u in ids] for es in sets],
                    axis=0)
    return ids, mean_weight, counts


def figure8(ctx: Context) -> Report:
    res = run_models(ctx, TABLE6_MODELS)
    data = load_dataset(res.configs[0].dataset)
    k, n_obj = res.configs[0].eval.k, len(res.objectives)
    sets = test_sets(res, data)
    ids, weight, counts = _candidates(data, sets, k)
    min_events = MIN_EVENTS_QUICK if ctx.quick else MIN_EVENTS
    picked = select_users(ids, weight, counts, min_events=min_events)
    subs, values, y_hat = method_values(res, data, sets, picked, k)
    views = {int(u): user_view(data, subs, values, y_hat, int(u), k) for u in picked}
    scores = {u: distances(v, n_obj) for u, v in views.items()}
    w_of = dict(zip(ids.tolist(), weight.tolist(), strict=True))
    report = Report("figure8", ctx.label, f"Figure 8 on {ctx.label}: the Pareto front of "
                    "single consumers", ctx.command)
    report.add(data_line(ctx, res), _rule_text(data, ctx, len(ids), min_events,
                                               int((counts >= min_events).sum())),
               "## What it shows", verdict(scores, views) + " " + served_line(res))
    for u, view in views.items():
        report.add(f"## User {data.user_ids[u - 1]} (weight on {res.objectives[0]}: "
                   f"{w_of[u]:.3f}; test events per repetition: "
                   f"{', '.join(map(str, view['events']))})",
                   user_table(view, scores[u], res.objectives))
    report.figure("figure8", plot_users(views, res, data, w_of),
                  f"Figure 8 analogue on {ctx.label}: each user's front of static α on the "
                  "true objectives (dashed), the user's optimum (black plus), DeepPRL's "
                  "predictor swept with static α (dotted, seed 0) and each variant's point "
                  "per seed")
    report.data = {
        "objectives": list(res.objectives), "seeds": res.seeds, "min_events": min_events,
        "rule": RULE.format(min_events=min_events),
        "eligible_users": int((counts >= min_events).sum()),
        "users": {data.user_ids[u - 1]: {
            "index": u, "weight_objective_1": w_of[u], "events": view["events"],
            "front": view["front"].tolist(), "optimum": view["optimum"].tolist(),
            "predictor_front": view.get("predictor_front", np.empty(0)).tolist(),
            "methods": scores[u]} for u, view in views.items()}}
    return report


RULE = ("users with at least {min_events} test events in every repetition, sorted "
        "by their weight on the first objective; the user at each quantile 1/8, 3/8, 5/8, 7/8 "
        "of that order (deepprl.experiments.figure8.select_users)")


def _rule_text(data: Interactions, ctx: Context, n_users: int, min_events: int,
               eligible: int) -> str:
    weight = ("the mean over their test events of the simulator's hidden preference w_u1(h)"
              if isinstance(data.valuer, SimulatorValuer) else
              "revealed, since the utility (the calibrated rating) is no weighting of the "
              "objectives: the mean over the user's test events of α₁ of the grid α whose "
              "ranking of the true objectives earns the most true utility at the event (the "
              "mean of every such α where several do)")
    return (f"**Selection rule**: {RULE.format(min_events=min_events)}; {eligible} of the "
            f"{n_users} test users qualify. A user's weight on the first objective: "
            f"{weight}. Each user's front, optimum and method points use only that user's "
            "test events, all of them (not the tables' subsample of eval.max_events; the "
            "same candidates; front and optimum averaged over repetitions). The optimum "
            "ranks every event by the user's TRUE utility: the most any ranking can give "
            "this user. Distance: Euclidean, in the "
            "objectives' space, from each seed's point to the optimum, mean over seeds. "
            "'Dominated by the user's front': seeds whose point some static α on the true "
            "objectives beats on every objective (the paper: its variants' trade-offs 'lie "
            "inside the convex hull of the pareto optimality').")


def verdict(scores: dict[int, dict[str, dict[str, Any]]], views: dict[int, dict[str, Any]]
            ) -> str:
    """What the panel shows, counted over the users: which variant is closest to each
    user's optimum and which earns the most utility, how often the user's static front
    dominates the points, and whether the optimum itself is on that front."""
    n = len(scores)
    closest, tied, richest = 0, 0, 0
    for s in scores.values():
        mine, best = s[OURS], min(v["distance"] for m, v in s.items() if m != OURS)
        closest += mine["distance"] < best
        tied += mine["distance"] == best
        richest += mine["utility_fraction"] > max(v["utility_fraction"]
                                                  for m, v in s.items() if m != OURS)
    static = sum(s[OURS]["utility_fraction"] > float(v["front"][:, -1].max() / v["optimum"][-1])
                 for s, v in zip(scores.values(), views.values(), strict=True))
    ours = [s[OURS] for s in scores.values()]
    others = [sc for s in scores.values() for m, sc in s.items() if m != OURS]
    inside = sum(not pareto_mask(np.vstack([v["optimum"][:-1], v["front"][:, :-1]]))[0]
                 for v in views.values())
    mean = {m: np.mean([s[m]["utility_fraction"] for s in scores.values()])
            for m in next(iter(scores.values()))}
    return (f"DeepPRL is closer to the user's optimum than each of its three variants for "
            f"{closest} of {n} users (tied with the closest for {tied}) and earns more utility "
            f"than each for {richest} of {n}"
            + ("" if closest == n else "; unlike the paper's single consumer, it is not "
               "closer to the optimum than its variants across this panel" if closest <= n / 2
               else "; it is not the closest for every user")
            + f". Its utility beats the user's best static α in hindsight (true objectives) "
            f"for {static} of {n}. The user's static front dominates DeepPRL's point in "
            f"{sum(s['dominated_by_front'] for s in ours)} of {sum(s['seeds'] for s in ours)} "
            f"(user, seed) pairs and its variants' in "
            f"{sum(s['dominated_by_front'] for s in others)} of "
            f"{sum(s['seeds'] for s in others)}. The optimum itself lies inside the user's "
            f"static front for {inside} of {n} users (the best ranking for the user is no "
            "single α: mean objectives are not what the user's utility rewards), so the "
            "distance to the optimum and the utility, not dominance, are the measures. Mean "
            "utility / optimum over the users: "
            + ", ".join(f"`{m}` {v:.3f}" for m, v in mean.items()) + ".")


def served_line(res: Results) -> str:
    """What each variant's runs serve: a run whose learned policy failed the held-out check
    serves the static alpha (deepprl.train.pessimism), and then its variants coincide."""
    parts = []
    for m, metrics in res.metrics.items():
        fell = sum(x.get("served") == "static" for x in metrics)
        parts.append(f"`{m}` {fell} of {len(metrics)}")
    return ("Runs serving the static α (the learned policy failed the held-out check): "
            + ", ".join(parts) + ".")


def plot_users(views: dict[int, dict[str, Any]], res: Results, data: Interactions,
               weight: dict[int, float]) -> Figure:
    """2 x 2 panels (one per user) in the plane of the first two objectives (a projection
    when K >= 3: the tables, computed in K dimensions, are the verdict)."""
    fig = Figure(figsize=(11, 9))
    x, y = res.objectives[0], res.objectives[1]
    markers = dict(zip(res.runs, ("*", "s", "^", "v", "o", "D"), strict=False))
    for n, (u, view) in enumerate(views.items()):
        ax = fig.add_subplot(-(-len(views) // 2), 2, n + 1)
        front = view["front"]
        front = front[pareto_mask(front[:, :2])]
        order = np.argsort(front[:, 0])
        ax.plot(front[order, 0], front[order, 1], "k--", lw=1.2,
                label="user's front: static α, true objectives")
        if "predictor_front" in view:
            p = view["predictor_front"]
            ax.plot(p[:, 0], p[:, 1], ":", color="grey", marker=".",
                    label="DeepPRL's predictor, static α (seed 0)")
        for m, pts in view["points"].items():
            ax.scatter(pts[:, 0], pts[:, 1], marker=markers[m], s=150 if m == OURS else 50,
                       c="crimson" if m == OURS else None, zorder=5, label=f"{m} (per seed)")
        opt = view["optimum"]
        ax.scatter([opt[0]], [opt[1]], marker="P", s=120, c="black", zorder=6,
                   label="user's optimum: rank by true utility")
        ax.set_title(f"user {data.user_ids[u - 1]} (w₁ = {weight[u]:.2f})", fontsize=10)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        if n == 0:
            ax.legend(fontsize=7, loc="best")
    return fig
