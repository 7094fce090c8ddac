"""The offline experiments' runs and their method tables (shared by Tables 4, 6, 8, 9-10).

Every method is trained by the same code path as `deepprl train --model NAME` (cached
under ctx.runs), evaluated on the same test events, and repeated over seeds; a table gives
mean ± std over seeds, marks the best (bold) and second best (underlined), and DeepPRL's
relative change against the best other method with the paired tests' p-values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepprl.artifacts import run_split
from deepprl.config import RunConfig
from deepprl.data.registry import DATASETS, load_dataset
from deepprl.eval.evaluator import build_eval_set
from deepprl.experiments import paper
from deepprl.experiments.context import Context
from deepprl.experiments.frontier import RunResult, evaluate_run, top_values, weight_grid
from deepprl.experiments.runs import dataset_spec, fold_settings, run_config, run_dir, train_all
from deepprl.experiments.stats import improvement, mean_std, paired_p, stars
from deepprl.report import md_table

FULL_SEEDS = 3

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
    paths: dict[str, list[Path]] = field(default_factory=dict)
    """The run directory of each run, grouped and ordered as `runs`."""

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
    paths: dict[str, list[Path]] = {m: [] for m in models}
    for (config, path), m in zip(jobs, metrics, strict=True):
        runs[config.name].append(evaluate_run(path))
        by_model[config.name].append(m)
        paths[config.name].append(path)
    names = tuple(metrics[0]["learned"]["objectives"])
    first = [config for config, _ in jobs if config.name == models[0]]
    return Results(objectives=names, runs=runs, metrics=by_model, configs=first, paths=paths)


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
    verdicts = [m["policy_check"] for m in res.metrics[ours] if m.get("policy_check")]
    if verdicts:  # the pessimism check (deepprl.train.pessimism): what "learned" serves
        fell = sum(v["served"] == "static" for v in verdicts)
        labels["learned"] += f"; fell back to static α in {fell} of {len(verdicts)} runs"
        data["policy_check"] = {"runs": len(verdicts), "served_static": fell,
                                "verdict_static": sum(v["verdict"] == "static"
                                                      for v in verdicts)}
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


def data_line(ctx: Context, res: Results) -> str:
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
            + _note(ctx.dataset))


def _note(dataset: str) -> str:
    """The dataset's caveat (data registry), for the data line."""
    entry = DATASETS.get(dataset)
    return " " + entry.note if entry is not None and entry.note else ""


def _trained_by(res: Results) -> set[str]:
    """The code versions recorded by the runs (cached runs keep the commit that made them)."""
    return {str(m.get("code", "deepprl 0.1.0 (before commits were recorded)"))
            for runs in res.metrics.values() for m in runs}
