"""The paper's offline experiments on our datasets: Tables 4, 5 (+ Figure 7), 6, 8, 9-10.

Every method is trained by the same code path as `deepprl train --model NAME` (cached
under ctx.runs), evaluated on the same test events, and repeated over seeds (network
initialisations and training draws). Each table gives mean ± std over seeds, marks the
best (bold) and second best (underlined), and DeepPRL's relative change against the best
other method; stars (paired test over runs, see stats.py) mark a significant gain, and a
loss is written out as "worse".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepprl.artifacts import run_split
from deepprl.config import RunConfig
from deepprl.data.registry import load_dataset
from deepprl.eval.evaluator import build_eval_set
from deepprl.eval.pareto import pareto_mask
from deepprl.experiments import paper
from deepprl.experiments.context import Context
from deepprl.experiments.frontier import (
    RunResult,
    evaluate_run,
    front_volumes,
    top_values,
    weight_grid,
)
from deepprl.experiments.runs import (
    dataset_spec,
    fold_settings,
    run_config,
    run_dir,
    train_all,
)
from deepprl.experiments.stats import improvement, mean_std, paired_p, stars
from deepprl.report import Report, md_table
from deepprl.zoo import configure

BASELINES = ("mo-linucb", "morl", "ple", "mmoe", "mose", "shared-bottom", "reinforce-topk",
             "drn")
TABLE4_MODELS = ("deepprl", *BASELINES)
TABLE6_MODELS = ("deepprl", "deepprl-no-dynamic", "deepprl-no-context",
                 "deepprl-no-dynamic-no-context")
TABLE8_MODELS = ("deepprl", "variant1-time-lstm", "variant2-sa-lstm", "variant3-transformer",
                 "variant4-shared-bottom", "variant5-cross-stitch", "variant6-dqn",
                 "variant7-reinforce")
FULL_SEEDS = 3
SUBSETS = (1, 2, 3)

PROTOCOL = ("Protocol: each user's latest 20% of events are the test period (temporal "
            "hold-out; the latest 10% of the rest is validation, used only to tune static "
            "weights); top-{k} of each test event's candidates, true values averaged over "
            "the top-{k} and then over events. The paper used time-stratified 5-fold "
            "cross-validation × 10 runs on its own logs; we repeat over {seeds} run(s) "
            "(`--seeds N`; `--folds 5` runs every fold of a time-stratified 5-fold split "
            "instead of the hold-out, each over the seeds).")
FOLDS_PROTOCOL = ("Split: every fold of a time-stratified {folds}-fold split (events sorted "
                  "by time, each block of {folds} dealt one per fold; the next fold is "
                  "validation), each fold over the seeds: {runs} runs per method.")


@dataclass(frozen=True)
class Results:
    """Every run of an experiment, grouped by model (one RunResult per seed)."""

    objectives: tuple[str, ...]
    runs: dict[str, list[RunResult]]
    metrics: dict[str, list[dict[str, Any]]]
    configs: list[RunConfig]
    """One config per repetition (of the first model): the data and split of each seed."""

    @property
    def seeds(self) -> int:
        """Repetitions: seeds x folds."""
        return len(next(iter(self.runs.values())))

    @property
    def ref(self) -> np.ndarray:
        return next(iter(self.runs.values()))[0].ref

    def points(self, model: str) -> np.ndarray:
        """[S, K + 1] mean objectives and reward per seed."""
        return np.stack([r.point for r in self.runs[model]])


def run_models(ctx: Context, models: tuple[str, ...], *, spec: dict[str, Any] | None = None
               ) -> Results:
    seeds = range(ctx.n_seeds(FULL_SEEDS))
    jobs = []
    for model in models:
        for seed in seeds:
            for split in fold_settings(ctx):
                config = run_config(ctx, model, seed, spec=spec, settings=split)
                jobs.append((config, run_dir(ctx, config)))
    metrics = train_all(ctx, jobs)
    runs: dict[str, list[RunResult]] = {m: [] for m in models}
    by_model: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for (config, path), m in zip(jobs, metrics, strict=True):
        runs[config.name].append(evaluate_run(path))
        by_model[config.name].append(m)
    names = tuple(metrics[0]["learned"]["objectives"])
    first = [config for config, _ in jobs if config.name == models[0]]
    return Results(objectives=names, runs=runs, metrics=by_model, configs=first)


# ---------------------------------------------------------------- method tables

def method_table(res: Results, models: tuple[str, ...], *, ours: str = "deepprl"
                 ) -> tuple[str, dict[str, Any]]:
    """Markdown table of mean ± std per objective and reward; our improvement over the
    best other method per column, with the paired tests' p-values."""
    columns = [*res.objectives, "reward"]
    means = {m: res.points(m).mean(0) for m in models}
    cells: dict[str, list[str]] = {m: [] for m in models}
    tests: dict[str, Any] = {}
    for j, column in enumerate(columns):
        ranked = sorted(models, key=lambda m: -means[m][j])
        rival = max((m for m in models if m != ours), key=lambda m: means[m][j])
        p_runs = paired_p(res.points(ours)[:, j], res.points(rival)[:, j])
        p_events = _event_p(res, ours, rival, j)
        gain = improvement(means[ours][j], means[rival][j])
        tests[column] = {"rival": rival, "improvement_pct": gain, "p_runs": p_runs,
                         "p_events": p_events, "best": ranked[0]}
        for m in models:
            mean, std = mean_std(res.points(m)[:, j])
            text = f"{mean:.4f} ± {std:.4f}" if res.seeds > 1 else f"{mean:.4f}"
            if m == ours:  # stars mark a significant gain, as in the paper
                marks = stars(p_runs).replace("*", "\\*")  # not Markdown emphasis
                text += f"{marks} ({gain:+.2f}%)" if gain > 0 else \
                    f" ({gain:+.2f}%, worse)"
            if m == ranked[0]:
                text = f"**{text}**"
            elif m == ranked[1]:
                text = f"<u>{text}</u>"
            cells[m].append(text)
    rows = [[f"`{m}`", *cells[m]] for m in models]
    table = md_table(["method", *columns], rows)
    lines = [f"- **{c}**: {ours} {t['improvement_pct']:+.2f}% vs the best other method "
             f"`{t['rival']}`; paired t-test over {res.seeds} runs p = {_p(t['p_runs'])}, "
             f"over {_events(res, ours)} test events p = {_p(t['p_events'])}"
             for c, t in tests.items()]
    wins = [c for c, t in tests.items() if t["best"] == ours]
    losses = [f"{c} (best: `{t['best']}`)" for c, t in tests.items() if t["best"] != ours]
    verdict = (f"**{ours} is best on every column.**" if not losses else
               f"**{ours} is best on {', '.join(wins) or 'no column'}; it is not best on "
               f"{', '.join(losses)}.**")
    text = "\n\n".join([table, "\n".join(lines), verdict])
    return text, {"means": {m: dict(zip(columns, means[m].tolist(), strict=True))
                            for m in models},
                  "std": {m: dict(zip(columns, res.points(m).std(0, ddof=1).tolist()
                                      if res.seeds > 1 else [0.0] * len(columns),
                                      strict=True)) for m in models},
                  "per_seed": {m: res.points(m).tolist() for m in models},
                  "tests": tests}


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a (one run)"
    return "< 1e-15" if p < 1e-15 else f"{p:.2g}"


def _events(res: Results, model: str) -> int:
    return sum(len(r.events) for r in res.runs[model])


def _event_p(res: Results, ours: str, rival: str, column: int) -> float:
    """Paired over test events, pooled over seeds (each seed's runs share their events)."""
    a, b = [], []
    for x, y in zip(res.runs[ours], res.runs[rival], strict=True):
        if not np.array_equal(x.events, y.events):
            return float("nan")
        values = (lambda r: r.objectives[:, column]) if column < len(res.objectives) \
            else (lambda r: r.reward)
        a.append(values(x))
        b.append(values(y))
    return paired_p(np.concatenate(a), np.concatenate(b))


def references_table(res: Results, ours: str = "deepprl") -> tuple[str, dict[str, Any]]:
    """Where the gain comes from (DESIGN §3): our predictor with equal and best static
    weights, popularity and the upper bound, mean over seeds."""
    labels = {"learned": f"{ours} (learned weights)",
              "equal": f"{ours}'s predictor, equal weights",
              "static": f"{ours}'s predictor, best static weights (validation)",
              "popularity": "popularity", "oracle": "upper bound: rank by true reward"}
    columns = [*res.objectives, "reward"]
    rows, data = [], {}
    for key, label in labels.items():
        found = [m[key] for m in res.metrics[ours] if key in m]
        if not found:
            continue
        values = np.array([[*f["objectives"].values(), f["reward"]] for f in found])
        rows.append([label, *values.mean(0).tolist()])
        data[key] = dict(zip(columns, values.mean(0).tolist(), strict=True))
    ceiling = weighting_ceiling(res)
    rows += [["true objectives, best static α in hindsight", *[float("nan")] * len(
        res.objectives), ceiling["static"]],
             ["true objectives, best α per event in hindsight", *[float("nan")] * len(
                 res.objectives), ceiling["per_event"]]]
    data["weighting_ceiling"] = ceiling
    return md_table(["reference", *columns], rows), data


def weighting_ceiling(res: Results) -> dict[str, float]:
    """The most reward ANY ranking by a weighted sum of the objectives can earn, with the
    true objective values: one α for all (best in hindsight over the grid), and the best
    grid α for each event. A method that ranks by Σ α ŷ (DeepPRL, the multi-task
    baselines) is bounded by the second; one that models the reward directly is not."""
    static, per_event = [], []
    for config in res.configs:
        data = load_dataset(config.dataset)
        es = build_eval_set(data, run_split(data, config), k=config.eval.k,
                            max_events=config.eval.max_events, seed=config.seed)
        truth = np.nan_to_num(es.objectives)
        rewards = np.stack([top_values(es, truth @ a, config.eval.k)[1]
                            for a in weight_grid(truth.shape[-1])])  # [A, E]
        static.append(float(rewards.mean(1).max()))
        per_event.append(float(rewards.max(0).mean()))
    return {"static": float(np.mean(static)), "per_event": float(np.mean(per_event))}


def paper_table(table: dict[str, dict[str, tuple[float, float]]], dataset: str,
                models: tuple[str, ...]) -> str:
    stand_in = paper.STAND_IN.get(dataset)
    if stand_in is None or stand_in not in table:
        return ("The paper has no counterpart of this dataset (its simulator appears only in "
                "§3.3 and §6), so there are no published numbers to set beside ours.")
    names = paper.TABLE4_OBJECTIVES[stand_in]
    rows = [[f"`{m}`", *table[stand_in][m]] for m in models if m in table[stand_in]]
    return (f"The paper's numbers on **{stand_in}** (the log whose objectives ours mirror; "
            f"different data, so context, not a target):\n\n"
            + md_table(["method", *names], rows))


def _data_line(ctx: Context, res: Results) -> str:
    p = res.runs["deepprl"][0].protocol if "deepprl" in res.runs else \
        next(iter(res.runs.values()))[0].protocol
    spec = dataset_spec(ctx)
    options = {k: v for k, v in spec.items() if k != "name"}
    mode = "quick mode (tiny sizes: the code path, not the numbers)" if ctx.quick \
        else "full mode"
    return (f"Data: `{ctx.dataset}`{' with ' + str(options) if options else ''}; {mode}; "
            f"{p['test_events']} test events, {p['excluded_events_with_at_most_k_candidates']}"
            f" with ≤ {p['k']} candidates excluded, {p['evaluated_events']} evaluated "
            f"(mean {p['mean_candidates']:.1f} candidates). "
            + PROTOCOL.format(k=p["k"], seeds=res.seeds)
            + (" " + FOLDS_PROTOCOL.format(folds=ctx.folds, runs=res.seeds) if ctx.folds
               else "")
            + f" Runs trained by: {', '.join(sorted(_trained_by(res)))}."
            + (" Yelp-HIN has no timestamps: each user's events are in a seeded random "
               "order, so 'latest' means last in that order, and there is no clock context."
               if ctx.dataset == "yelp-hin" else ""))


def _trained_by(res: Results) -> set[str]:
    """The code versions recorded by the runs (cached runs keep the commit that made them)."""
    return {str(m.get("code", "deepprl 0.1.0 (before commits were recorded)"))
            for runs in res.metrics.values() for m in runs}


# ---------------------------------------------------------------- experiments

def table4(ctx: Context) -> Report:
    res = run_models(ctx, TABLE4_MODELS)
    report = Report("table4", ctx.dataset, f"Table 4 on {ctx.dataset}: DeepPRL and the "
                    "eight baselines", ctx.command)
    table, data = method_table(res, TABLE4_MODELS)
    refs, ref_data = references_table(res)
    report.add(_data_line(ctx, res), "## Every method (top-K mean of each objective; "
               "reward = each user's own trade-off)", table,
               "## References", refs,
               "## The paper", paper_table(paper.TABLE4, ctx.dataset, TABLE4_MODELS))
    report.data = {"objectives": list(res.objectives), "seeds": res.seeds, **data,
                   "references": ref_data}
    return report


def table5(ctx: Context) -> Report:
    res = run_models(ctx, TABLE4_MODELS)
    report = Report("table5", ctx.dataset, f"Table 5 and Figure 7 on {ctx.dataset}: Pareto "
                    "frontiers", ctx.command)
    fronts = method_fronts(res, TABLE4_MODELS)
    volumes, text = volume_table(res, fronts)
    report.add(_data_line(ctx, res), FRONT_PROTOCOL, "## Volumes", text,
               personal_tradeoff_line(res, fronts))
    refs, _ = references_table(res)
    report.add("## Does DeepPRL's point lie beyond each front?", beyond_table(res),
               "## The reward beside the objectives (each user's own trade-off; mean over "
               "seeds)", refs)
    report.figure("figure7", plot_fronts(res, fronts, ctx.dataset),
                  f"Figure 7 analogue on {ctx.dataset}: static-weight fronts (lines), "
                  "DeepPRL over initialisations (stars), oracle front (dashed)")
    stand_in = paper.STAND_IN.get(ctx.dataset)
    if stand_in:
        report.add(f"The paper's Table 5 on **{stand_in}** (convex-hull volume): " + ", ".join(
            f"{m} {v}" for m, v in paper.TABLE5[stand_in].items())
            + ". Its scale depends on the objectives' ranges and on how the hull is closed, "
              "which the paper does not state; compare ratios, not values.")
    report.data = {"objectives": list(res.objectives), "seeds": res.seeds,
                   "reference_point": res.ref.tolist(), "volumes": volumes,
                   "fronts": {m: f.tolist() for m, f in fronts.items()}}
    return report


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
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot()
    x, y = res.objectives[0], res.objectives[1]
    for m, points in fronts.items():
        order = np.argsort(points[:, 0])
        if m == "oracle":
            ax.plot(points[order, 0], points[order, 1], "k--", lw=1.2, label="oracle front")
        elif m == "deepprl":
            ax.scatter(points[:, 0], points[:, 1], marker="*", s=160, c="crimson",
                       zorder=5, label="DeepPRL (per seed)")
        elif len(points) > res.seeds:
            ax.plot(points[order, 0], points[order, 1], marker="o", ms=3, lw=1, label=m,
                    ls=":" if "predictor" in m else "-")
        else:
            ax.scatter(points[:, 0], points[:, 1], marker="^", s=40, label=m)
    best = oracle_reward_point(res)
    ax.scatter([best[0]], [best[1]], marker="P", s=90, c="black", zorder=5,
               label="oracle: rank by each user's true reward")
    static = [m["static"]["objectives"] for m in res.metrics.get("deepprl", []) if "static" in m]
    if static:
        point = np.mean([[v[x], v[y]] for v in static], axis=0)
        ax.scatter([point[0]], [point[1]], marker="D", s=60, facecolors="none",
                   edgecolors="crimson", zorder=5,
                   label="DeepPRL's predictor, best static α (validation)")
    ax.scatter([res.ref[0]], [res.ref[1]], marker="x", c="grey", label="reference point")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{dataset}: top-K means of the objectives")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


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


def table6(ctx: Context) -> Report:
    res = run_models(ctx, TABLE6_MODELS)
    report = Report("table6", ctx.dataset, f"Table 6 on {ctx.dataset}: the dynamic / "
                    "contextual variants", ctx.command)
    table, data = method_table(res, TABLE6_MODELS)
    k = len(res.objectives)
    fronts = {m: res.points(m)[:, :k] for m in TABLE6_MODELS}
    fronts["oracle"] = np.mean([r.oracle_sweep[:, :k] for r in res.runs["deepprl"]], axis=0)
    volumes, vtext = volume_table(res, fronts)
    report.add(_data_line(ctx, res),
               "`deepprl-no-dynamic`: each user's weights from the contextual policy "
               "gradient, frozen at their last event before the test period; "
               "`deepprl-no-context`: the policy without context input; both: frozen and "
               "without context.", "## Objectives and reward", table,
               "## Volumes of each variant's points over seeds", vtext)
    weights_text, weights = _learned_weights(res, TABLE6_MODELS)
    report.add("## The weights each variant learned", weights_text)
    stand_in = paper.STAND_IN.get(ctx.dataset)
    if stand_in:
        report.add(f"The paper's Table 6 on **{stand_in}** (convex-hull volume): " + ", ".join(
            f"{m} {v}" for m, v in paper.TABLE6[stand_in].items()) + ".")
    report.data = {"objectives": list(res.objectives), "seeds": res.seeds, **data,
                   "volumes": volumes, "mean_weights": weights}
    return report


def _learned_weights(res: Results, models: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Mean alpha over each run's test events, then over seeds, and the range over seeds:
    whether the policy varies its weights at all (a corner, alpha_k = 1, means it does
    not, and then freezing them or dropping the context cannot change anything)."""
    rows, out = [], {}
    for m in models:
        per_seed = np.array([r.mean_weights for r in res.runs[m] if r.mean_weights is not None])
        if not len(per_seed):
            continue
        out[m] = {"mean": per_seed.mean(0), "per_seed": per_seed}
        rows.append([f"`{m}`", *[f"{per_seed[:, j].mean():.3f} ({per_seed[:, j].min():.3f}"
                                 f"–{per_seed[:, j].max():.3f})"
                                 for j in range(per_seed.shape[1])]])
    text = ("Mean α over the test events, mean over seeds (range over seeds):\n\n"
            + md_table(["variant", *[f"α {o}" for o in res.objectives]], rows))
    return text, out


def table8(ctx: Context) -> Report:
    res = run_models(ctx, TABLE8_MODELS)
    report = Report("table8", ctx.dataset, f"Table 8 on {ctx.dataset}: the seven ablation "
                    "variants (paper Table 7)", ctx.command)
    table, data = method_table(res, TABLE8_MODELS)
    report.add(_data_line(ctx, res), "Variants (paper Table 7): 1 Time-LSTM without "
               "self-attention; 2 self-attentive LSTM without time gate; 3 Transformer "
               "encoder; 4 Shared-Bottom and 5 Cross-Stitch instead of the Mixture of "
               "HyperNetwork; 6 DQN over a weight grid and 7 REINFORCE instead of the "
               "contextual policy gradient.", "## Objectives and reward", table,
               "## The paper", paper_table(paper.TABLE8, ctx.dataset, TABLE8_MODELS))
    report.data = {"objectives": list(res.objectives), "seeds": res.seeds, **data}
    return report


def sparsity(ctx: Context) -> Report:
    report = Report("sparsity", ctx.dataset, f"Tables 9-10 on {ctx.dataset}: three nested "
                    "subsets of rising sparsity", ctx.command)
    stats_rows, per_subset = [], {}
    for subset in SUBSETS[2:] if ctx.quick else SUBSETS:  # quick: the smallest only
        # subset 1 is the whole log: the same data as table4's runs, which it reuses
        spec = dataset_spec(ctx) if subset == 1 else dataset_spec(ctx, subset=subset)
        data = load_dataset(spec)
        density = 100.0 * data.n_events / (data.n_users * data.n_items)
        stats_rows.append([f"subset {subset}", data.n_events, data.n_users, data.n_items,
                           f"{density:.3f}%"])
        res = run_models(ctx, TABLE4_MODELS, spec=spec)
        table, data_out = method_table(res, TABLE4_MODELS)
        per_subset[str(subset)] = {"records": data.n_events, "users": data.n_users,
                                   "items": data.n_items, "sparsity_pct": density, **data_out}
        report.add(f"## Subset {subset}", _data_line(ctx, res).replace(
            f"`{ctx.dataset}`", f"`{ctx.dataset}` subset {subset}"), table)
    report.blocks[0:0] = [*_sparsity_trend(per_subset),
        "## Table 9: the subsets (sparsity as the paper defines it: records / (users × "
        "items))", md_table(["subset", "records", "users", "items", "sparsity"],
                            stats_rows),
        "The paper's Spotify subsets: " + "; ".join(
            f"{name}: {r:,} records, {u:,} users, {i:,} items, {s}%"
            for name, (r, u, i, s) in paper.TABLE9.items())
        + ". Its DeepPRL gains over the second best (MoSE) grew with sparsity: "
        + "; ".join(f"{name} listening % {v['deepprl'][0]} vs {v['mose'][0]}"
                    for name, v in paper.TABLE10.items()) + "."]
    report.data = {"subsets": per_subset}
    return report


def _sparsity_trend(per_subset: dict[str, dict[str, Any]]) -> list[str]:
    """Table 10 at a glance: DeepPRL against the best other method and against MoSE (the
    paper's runner-up) per subset, densest first, so a trend with sparsity shows."""
    first = next(iter(per_subset.values()))
    columns = list(first["tests"])
    mose = all({"deepprl", "mose"} <= set(out["means"]) for out in per_subset.values())
    rows = []
    for subset, out in per_subset.items():
        row: list[Any] = [f"subset {subset} ({out['sparsity_pct']:.2f}%)"]
        for column in columns:
            test = out["tests"][column]
            row.append(f"{test['improvement_pct']:+.1f}% vs {test['rival']} "
                       f"(p = {test['p_runs']:.2g})")
            if mose:
                ours, theirs = (out["means"][m][column] for m in ("deepprl", "mose"))
                row.append(f"{100.0 * (ours / theirs - 1.0):+.1f}%")
        rows.append(row)
    headers = ["subset (records / users × items)"]
    for column in columns:
        headers += [f"{column}: DeepPRL vs best other", *([f"{column}: vs MoSE"] * mose)]
    return ["## Table 10 at a glance: DeepPRL's margin as sparsity changes",
            "Per subset and column, DeepPRL's improvement over the best other method (paired "
            "t-test over runs) and over MoSE, the paper's runner-up; the paper's Spotify "
            "gains grew with sparsity. Details per subset below.",
            md_table(headers, rows)]
