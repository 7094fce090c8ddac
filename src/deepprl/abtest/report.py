"""Tables 11-15 and Figures 12-14 of an A/B log, written into a Report.

`analyse(df, schema, report)` works on any log that LogSchema describes; the paper's
numbers are shown beside ours when `paper=True` (objectives named vv, dt, ctr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from deepprl.abtest.analysis import (
    Effect,
    LogSchema,
    balance,
    check_log,
    correlation_by_bins,
    correlations,
    daily_effects,
    experiment_rows,
    first_seen,
    treatment_effect,
    two_arms,
    units,
)
from deepprl.report import Report, md_table

PAPER_T12 = {"vv": "0.4742*** (0.0611)", "dt": "45.836*** (6.6932)",
             "ctr": "0.0236*** (0.0049)"}
PAPER_T12_RELATIVE = {"vv": 0.0509, "dt": 0.0711}
PAPER_T12_R2 = {"vv": "0.0078", "dt": "0.0089", "ctr": "0.0093"}
PAPER_T13 = {"vv-dt": (-0.163, 0.196), "vv-ctr": (0.562, 0.651), "dt-ctr": (0.364, 0.435)}
PAPER_T14_VV = ("0.4742*** (0.0611)", "0.4722*** (0.0697)", "0.4756*** (0.0648)",
                "0.4744*** (0.0627)", "0.4731*** (0.0749)")
PAPER_T15 = {"b": {"vv": "0.4742*** (0.0611)", "dt": "45.779*** (6.7015)",
                   "ctr": "0.0221*** (0.0070)"},
             "c": {"vv": "0.4706*** (0.0650)", "dt": "45.533*** (6.9263)",
                   "ctr": "0.0224*** (0.0071)"}}
SPECS = ((True, True, True), (False, True, True), (True, False, True), (True, True, False),
         (False, False, False))


def analyse(df: pd.DataFrame, schema: LogSchema, report: Report, *, unit: str = "session",
            cov: str = "cluster", paper: bool = True) -> dict[str, Any]:
    """Every analysis of paper §7 into `report`; returns the numbers (also report.data)."""
    paper = paper and set(schema.objectives) == set(PAPER_T12)
    df = two_arms(df, schema)
    exp = experiment_rows(df, schema)
    data = units(exp, schema, unit)
    out: dict[str, Any] = {"unit": unit, "cov": cov}
    out["table11"] = _table11(df, schema, report)
    out["table12"] = _table12(data, schema, report, unit, cov, paper)
    out["table13"] = _table13(df, schema, report, unit, paper)
    out["figure12"] = _figure12(df, schema, report)
    out["figure13"] = _figure13(data, schema, report, cov)
    out["table14"] = _table14(data, schema, report, cov, paper)
    out["table15"] = _table15(exp, schema, report, unit, cov, paper)
    out["figure14"] = _figure14(exp, schema, report, unit, cov)
    out["shown"] = _shown(data, schema, report, cov)
    report.data.update(out)
    return out


def _effect_dict(e: Effect | None) -> dict[str, Any] | None:
    return None if e is None else {k: getattr(e, k) for k in (
        "coef", "se", "p", "ci_low", "ci_high", "r2", "observations", "consumers",
        "control_mean", "cov")}


def _table11(df: pd.DataFrame, schema: LogSchema, report: Report) -> list[dict[str, Any]]:
    rows = balance(df, schema)
    report.add("## Table 11: balance of consumer features between the arms",
               "One row per consumer. Numeric features: Wilcoxon rank-sum test (scipy). "
               "Categorical features: the rank-sum test on each level's indicator, "
               "Bonferroni-adjusted minimum over levels, and a chi-square test of "
               "independence. Paper: every p-value > 0.05.",
               md_table(["Feature", "Kind", "Rank-sum p", "Chi-square p", "Paper"],
                        [[r["feature"], r["kind"], r["ranksum_p"], r["chi2_p"], "> 0.05"]
                         for r in rows], digits=3))
    return rows


def _table12(data: pd.DataFrame, schema: LogSchema, report: Report, unit: str, cov: str,
             paper: bool) -> dict[str, Any]:
    main = {o: treatment_effect(data, schema, o, cov=cov) for o in schema.objectives}
    other = "HC1" if cov == "cluster" else "cluster"
    alt = {o: treatment_effect(data, schema, o, cov=other) for o in schema.objectives}
    head = ["", *[c for o in schema.objectives
                  for c in ([o.upper(), f"{o.upper()} (paper)"] if paper else [o.upper()])]]

    def row(label: str, ours: list[Any], theirs: list[Any]) -> list[Any]:
        cells: list[Any] = [label]
        for i in range(len(ours)):
            cells += [ours[i], theirs[i]] if paper else [ours[i]]
        return cells

    objs = schema.objectives
    rows = [
        row(f"Treatment ({cov} SE)", [main[o].cell() for o in objs],
            [PAPER_T12.get(o, "") for o in objs]),
        row(f"Treatment ({other} SE)", [alt[o].cell() for o in objs], ["—"] * len(objs)),
        row("95 % CI", [f"[{main[o].ci_low:.4g}, {main[o].ci_high:.4g}]" for o in objs],
            ["—"] * len(objs)),
        row("p-value", [f"{main[o].p:.3g}" for o in objs], ["< 0.01"] * len(objs)),
        row("Effect / control mean", [f"{100 * main[o].relative:+.2f} %" for o in objs],
            [f"+{100 * PAPER_T12_RELATIVE[o]:.2f} %" if o in PAPER_T12_RELATIVE else "—"
             for o in objs]),
        row("Control mean", [main[o].control_mean for o in objs], ["—"] * len(objs)),
        row("R-squared", [main[o].r2 for o in objs], [PAPER_T12_R2.get(o, "") for o in objs]),
        row("Consumers", [main[o].consumers for o in objs], ["63,361"] * len(objs)),
        row("Observations", [main[o].observations for o in objs],
            ["30,714,995"] * len(objs)),
    ]
    report.add("## Table 12: average treatment effect (OLS, equation 8)",
               f"Unit: {unit}s. Controls: consumer features, video features, day fixed "
               f"effects. Standard errors in parentheses; * p<0.1, ** p<0.05, *** p<0.01.",
               md_table(head, rows), _verdict(main))
    return {o: {"main": _effect_dict(main[o]), other: _effect_dict(alt[o])} for o in objs}


def _verdict(effects: dict[str, Effect]) -> str:
    lines = []
    for o, e in effects.items():
        if e.p < 0.05:
            word = "higher" if e.coef > 0 else "LOWER"
            lines.append(f"* {o.upper()}: the treatment is significantly {word} than control "
                         f"({e.coef:+.4g}, p = {e.p:.2g}).")
        else:
            lines.append(f"* {o.upper()}: no significant difference between the arms "
                         f"({e.coef:+.4g}, p = {e.p:.2g}): the treatment does not beat "
                         f"control on this objective.")
    return "\n".join(lines)


def _table13(df: pd.DataFrame, schema: LogSchema, report: Report, unit: str, paper: bool
             ) -> dict[str, Any]:
    treated = df[schema.arm].astype(str) == schema.treatment
    exp_mask = df.index.isin(experiment_rows(df, schema).index)
    groups = {"treatment, pre-period": df[treated & ~exp_mask],
              "treatment, experiment": df[treated & exp_mask],
              "control, experiment": df[~treated & exp_mask]}
    out: dict[str, Any] = {}
    rows = []
    for level in dict.fromkeys(("record", unit)):
        for name, part in groups.items():
            out[f"{level}: {name}"] = (correlations(units(part, schema, level),
                                                    schema.objectives)
                                       if len(part) else {})
    pairs = list(next(iter(out.values()), {}) or correlations(df, schema.objectives))
    for pair in pairs:
        cells: list[Any] = [pair]
        for key in out:
            cells.append(out[key].get(pair, float("nan")))
        if paper:
            ref = PAPER_T13.get(pair) or PAPER_T13.get("-".join(reversed(pair.split("-"))))
            cells.append(f"{ref[0]:.3f} → {ref[1]:.3f}" if ref else "—")
        rows.append(cells)
    report.add("## Table 13: correlation between objectives, before and after treatment",
               "Pearson correlation of each pair. The paper compares the treatment group's "
               "pre- and post-treatment records; we add the control arm during the "
               "experiment (the same period, the other model).",
               md_table(["Pair", *out, *(["Paper pre → post"] if paper else [])], rows,
                        digits=3))
    return out


def _figure12(df: pd.DataFrame, schema: LogSchema, report: Report) -> dict[str, Any]:
    pair = (schema.objectives[0], schema.objectives[1])
    treated = df[schema.arm].astype(str) == schema.treatment
    exp_mask = df.index.isin(experiment_rows(df, schema).index)
    parts = {"pre": df[treated & ~exp_mask], "treatment": df[treated & exp_mask],
             "control": df[~treated & exp_mask]}
    fig = Figure(figsize=(10, 3.6))
    out: dict[str, Any] = {}
    for i, column in enumerate((schema.length, schema.popularity)):
        ax = fig.add_subplot(1, 2, i + 1)
        tables = {k: correlation_by_bins(v, column, pair) for k, v in parts.items() if len(v)}
        treat = tables["treatment"]
        x = np.arange(len(treat))
        shifts: dict[str, list[float]] = {}
        for j, base in enumerate(b for b in ("pre", "control") if b in tables):
            shift = (treat["r"].to_numpy() - tables[base]["r"].to_numpy()[: len(treat)])
            shifts[base] = shift.tolist()
            ax.bar(x + (j - 0.5) * 0.4, shift, width=0.4,
                   label=f"treatment − {base if base == 'control' else 'pre-period'}")
        ax.set_xticks(x, [f"{_short(lo)}–{_short(hi)}" for lo, hi in
                          zip(treat["low"], treat["high"], strict=True)], fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel(f"{column} (quartiles)")
        ax.set_ylabel(f"shift of r({pair[0]}, {pair[1]})")
        ax.legend(fontsize=7)
        out[column] = {"bins": treat[["low", "high", "n"]].to_dict("list"),
                       "r": {k: t["r"].tolist() for k, t in tables.items()}, "shift": shifts}
    fig.tight_layout()
    report.add("## Figure 12: shift of the VV–DT correlation by video length and popularity",
               "Record level. Bars: the treatment arm's correlation minus that of the same "
               "consumers in the pre-period (the paper's comparison) and minus the control "
               "arm's in the experiment. Paper: longer and less popular videos shift more.")
    report.figure("figure12", fig, f"Shift of r({pair[0]}, {pair[1]}) by video length and "
                  f"view count")
    return out


def _short(x: float) -> str:
    """2400 -> '2.4k', 150000 -> '150k' (axis labels)."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _plot_effects(ax: Any, x: list[Any], effects: list[Effect | None], label: str) -> None:
    ok = [i for i, e in enumerate(effects) if e is not None]
    coef = np.array([effects[i].coef for i in ok])  # type: ignore[union-attr]
    low = np.array([effects[i].ci_low for i in ok])  # type: ignore[union-attr]
    high = np.array([effects[i].ci_high for i in ok])  # type: ignore[union-attr]
    xs = [x[i] for i in ok]
    ax.errorbar(xs, coef, yerr=[coef - low, high - coef], fmt="o-", capsize=3, ms=3)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(label, fontsize=9)


def _figure13(data: pd.DataFrame, schema: LogSchema, report: Report, cov: str
              ) -> dict[str, Any]:
    days = sorted(data[schema.day].unique().tolist())
    fig = Figure(figsize=(4 * len(schema.objectives), 3.2))
    out: dict[str, Any] = {"days": days}
    rows = []
    for i, o in enumerate(schema.objectives):
        effects = daily_effects(data, schema, o, cov=cov)
        _plot_effects(fig.add_subplot(1, len(schema.objectives), i + 1), days, effects,
                      f"daily effect on {o.upper()} (95 % CI)")
        out[o] = [_effect_dict(e) for e in effects]
        sig = [e for e in effects if e is not None and e.p < 0.05]
        first = [e.coef for e in effects[:7] if e is not None]
        last = [e.coef for e in effects[-7:] if e is not None]
        rows.append([o.upper(), len(effects), sum(e.coef > 0 for e in sig),
                     sum(e.coef < 0 for e in sig),
                     float(np.mean(first)) if first else float("nan"),
                     float(np.mean(last)) if last else float("nan")])
    fig.tight_layout()
    report.add("## Figure 13: daily treatment effects",
               "Equation (8) without time fixed effects, run on each day separately; "
               "95 % confidence intervals from the robust standard errors. Paper: "
               "significantly positive every day, growing from day 5 on.",
               md_table(["Objective", "Days", "Significantly positive", "Significantly "
                         "negative", "Mean effect, first 7 days", "Mean effect, last 7 days"],
                        rows))
    report.figure("figure13", fig, "Daily average treatment effects with 95 % CIs")
    return out


def _table14(data: pd.DataFrame, schema: LogSchema, report: Report, cov: str, paper: bool
             ) -> dict[str, Any]:
    yes = {True: "Yes", False: "No"}
    head = ["Objective", *[f"C {yes[c]}, V {yes[v]}, T {yes[t]}" for c, v, t in SPECS]]
    rows: list[list[Any]] = []
    out: dict[str, Any] = {}
    for o in schema.objectives:
        effects = [treatment_effect(data, schema, o, consumer=c, video=v, time_fe=t, cov=cov)
                   for c, v, t in SPECS]
        out[o] = [_effect_dict(e) for e in effects]
        rows.append([o.upper(), *[e.cell() for e in effects]])
        rows.append([f"{o.upper()} R²", *[e.r2 for e in effects]])
        if paper and o == "vv":
            rows.append(["VV (paper)", *PAPER_T14_VV])
    report.add("## Table 14: robustness to the controls",
               "C = consumer features, V = video features, T = day fixed effects. Video "
               "features describe what the arm chose to show, so they are partly an outcome "
               "of the treatment: the column without them is the total effect.",
               md_table(head, rows))
    return out


def _table15(exp: pd.DataFrame, schema: LogSchema, report: Report, unit: str, cov: str,
             paper: bool) -> dict[str, Any]:
    subsets: dict[str, pd.DataFrame] = {}
    if schema.premium is not None:
        subsets["b"] = exp[exp[schema.premium].astype(int) == 0]
    if schema.new_consumer is not None and schema.new_video is not None:
        subsets["c"] = exp[(exp[schema.new_consumer].astype(int) == 0)
                           & (exp[schema.new_video].astype(int) == 0)]
    label = {"b": "(b) without premium content",
             "c": "(c) without new consumers and new videos"}
    rows, out = [], {}
    for key, part in subsets.items():
        data = units(part, schema, unit)
        effects = {o: treatment_effect(data, schema, o, cov=cov) for o in schema.objectives}
        out[key] = {o: _effect_dict(e) for o, e in effects.items()}
        first = next(iter(effects.values()))
        rows.append([label[key], *[e.cell() for e in effects.values()], first.consumers,
                     first.observations])
        if paper:
            rows.append([f"{label[key]} (paper)", *[PAPER_T15[key][o]
                                                    for o in schema.objectives],
                         "63,361" if key == "b" else "62,378",
                         "28,378,372" if key == "b" else "30,538,268"])
    if rows:
        report.add("## Table 15: excluding premium content, new consumers and new videos",
                   "Records are filtered before sessions are formed.",
                   md_table(["Sample", *[o.upper() for o in schema.objectives], "Consumers",
                             "Observations"], rows))
    return out


def _shown(data: pd.DataFrame, schema: LogSchema, report: Report, cov: str
           ) -> dict[str, Any]:
    """What each arm showed: equation (8) without video controls, with each numeric video
    feature (a session's mean) as the outcome. Explains Table 14's video-control columns."""
    rows, out = [], {}
    for feature in schema.video_numeric:
        e = treatment_effect(data, schema, feature, video=False, cov=cov)
        out[feature] = _effect_dict(e)
        rows.append([feature, e.control_mean, e.control_mean + e.coef, e.cell(),
                     f"{100 * e.relative:+.1f} %"])
    report.add("## What the arms showed",
               "Mean feature of the videos shown (per unit), control and treatment; the "
               "difference from equation (8) with consumer features and day effects.",
               md_table(["Video feature", "Control", "Treatment (control + effect)",
                         "Difference", "Relative"], rows))
    return out


BINS = ((0, 0), (1, 2), (3, 6), (7, 13), (14, 10_000))


def _figure14(exp: pd.DataFrame, schema: LogSchema, report: Report, unit: str, cov: str
              ) -> dict[str, Any]:
    if schema.new_consumer is None:
        return {}
    since = first_seen(exp, schema)
    new = exp[exp[schema.new_consumer].astype(int) == 1].copy()
    if new.empty:
        report.add("## Figure 14: cold-start consumers", "The log has no new consumers.")
        return {}
    new["since_bin"] = np.searchsorted([b[1] for b in BINS], since[new.index], side="left")
    data = units(new, schema, unit, extra=("since_bin",))
    labels = [f"{lo}" if lo == hi else f"{lo}+" if hi > 1000 else f"{lo}–{hi}"
              for lo, hi in BINS]
    present = sorted(data["since_bin"].unique().tolist())
    fig = Figure(figsize=(4 * len(schema.objectives), 3.2))
    out: dict[str, Any] = {"bins": [labels[b] for b in present]}
    rows = []
    for i, o in enumerate(schema.objectives):
        effects = daily_effects(data, schema, o, by="since_bin", cov=cov, time_fe=True)
        _plot_effects(fig.add_subplot(1, len(schema.objectives), i + 1),
                      [labels[b] for b in present], effects, f"new consumers: {o.upper()}")
        out[o] = [_effect_dict(e) for e in effects]
        rows.append([o.upper(), *[e.cell() if e else "—" for e in effects]])
    fig.supxlabel("days since the consumer's first day", fontsize=9)
    fig.tight_layout()
    report.add("## Figure 14: cold-start consumers over time",
               f"Consumers who joined during the experiment "
               f"({new[schema.user].nunique()} consumers): the treatment effect by days since "
               f"their first day (equation 8 in each bin, with day effects when the bin spans "
               f"several days). Paper: positive and growing.",
               md_table(["Objective", *[f"day {labels[b]}" for b in present]], rows))
    report.figure("figure14", fig, "Treatment effect on new consumers by days since joining")
    return out


def analyse_file(log: str | Path, *, out: Path = Path("reports"), schema: LogSchema | None = None,
                 unit: str = "session", cov: str = "cluster", command: str = "") -> Path:
    """Analyse a team's own A/B log (Parquet or CSV, columns per `schema`): writes
    OUT/abtest/<file stem>.md, .json and the PNGs; returns the Markdown's path."""
    path = Path(log)
    if not path.is_file():
        raise ValueError(f"{path}: A/B log not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .parquet or .csv")
    schema = schema or LogSchema()
    check_log(df, schema)
    report = Report("abtest", path.stem, f"A/B analysis of {path.name} (paper §7)",
                    command or f"deepprl abtest analyse {path}")
    analyse(df, schema, report, unit=unit, cov=cov, paper=False)
    return report.write(out)
