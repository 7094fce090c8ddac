"""Paper §7: the online A/B experiment, simulated (deepprl experiment abtest).

Builds the simulated platform, logs a pre-period under the legacy ranker, trains MMoE
(static weights, control) and DeepPRL (treatment) on it with deepprl's own training, runs
the hash-randomised experiment and writes Tables 11-15 and Figures 12-14 (deepprl.abtest).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from deepprl.abtest.analysis import (
    LogSchema,
    correlations,
    treatment_effect,
    two_arms,
    units,
)
from deepprl.abtest.platform import PlatformConfig
from deepprl.abtest.report import analyse
from deepprl.abtest.simulate import ExperimentConfig, run_experiment
from deepprl.experiments.context import Context
from deepprl.report import Report, md_table

QUICK = ExperimentConfig(
    platform=PlatformConfig(consumers=500, videos=200, sessions_per_day=1.5, seed=0),
    days=4, pre_days=3, epochs=1, policy_steps=30, static_trials=4, max_train_events=1000)
FULL = ExperimentConfig(
    platform=PlatformConfig(consumers=20_000, videos=1_500, sessions_per_day=0.3, seed=0),
    days=30, pre_days=5, epochs=2, policy_steps=1000, static_trials=20,
    max_train_events=20_000)


def abtest(ctx: Context) -> Report:
    """The simulated online experiment and its analyses."""
    started = time.perf_counter()
    config = QUICK if ctx.quick else FULL
    report = Report("abtest", ctx.label, "Online A/B experiment, simulated (paper §7, "
                    "Tables 11-15, Figures 12-14)", ctx.command)
    workdir = ctx.runs / "abtest" / ("quick" if ctx.quick else "full")
    log, facts = run_experiment(config, workdir, log=lambda _: None)
    df = log.to_pandas()
    schema = LogSchema()
    _setup(report, config, facts, df)
    _heterogeneity(report, df)
    _weights(report, df)
    analyse(df, schema, report)
    if "deepprl-static" in dict(config.arms):
        _decompose(report, df, schema)
    _differences(report, df)
    facts["seconds_total"] = time.perf_counter() - started
    report.data["facts"] = facts
    report.add("## Wall time",
               f"Whole command: {facts['seconds_total']:.0f} s on this machine "
               f"(pre-period {facts['seconds_pre_period']:.0f} s, training MMoE "
               f"{facts['train_mmoe']['seconds']:.0f} s and DeepPRL "
               f"{facts['train_deepprl']['seconds']:.0f} s, experiment "
               f"{facts['seconds_experiment']:.0f} s, the rest is the analyses).")
    return report


def _setup(report: Report, config: ExperimentConfig, facts: dict[str, Any],
           df: pd.DataFrame) -> None:
    p = config.platform
    exp = df[df["period"] != "pre"]
    arms = exp.groupby("arm")["user_id"].nunique().to_dict()
    report.add(
        "## Set-up (what was run)",
        f"* Platform: {p.consumers:,} consumers ({100 * p.new_consumer_share:.0f} % join "
        f"during the experiment), {p.videos:,} videos ({100 * p.premium_share:.0f} % of "
        f"drama/variety/anime/movie premium, VIP only), {p.sessions_per_day} sessions per "
        f"consumer-day on average, {p.candidates} candidates ranked and {p.slots} shown per "
        f"session, seed {p.seed}.\n"
        f"* Pre-period: {config.pre_days} days under the legacy ranker (log popularity + "
        f"Gumbel noise): {facts['pre_records']:,} records; both arms train on it with "
        f"`train_run` (generic-log loader, mapping in deepprl.abtest.simulate): "
        f"{config.epochs} epochs; DeepPRL {config.policy_steps} actor-critic steps; MMoE "
        f"static weights by {config.static_trials} Optuna trials "
        f"(tuned: {_round(facts['train_mmoe'].get('static_weights'))}).\n"
        f"* Experiment: {config.days} days, consumers hashed into the arms "
        f"(blake2b, salt {config.salt!r}, shares {dict(config.arms)}): "
        f"{arms.get('control', 0):,} control (MMoE), {arms.get('treatment', 0):,} treatment "
        f"(DeepPRL) and {arms.get('deepprl-static', 0):,} deepprl-static (DeepPRL's "
        f"predictor, static alpha {_round(facts.get('deepprl_static_weights'))}) consumers "
        f"active; {facts['experiment_records']:,} records in "
        f"{exp['session_id'].nunique():,} sessions. Videos never shown in the pre-period are "
        f"unknown to both models and never candidates: {facts['videos_unknown_to_models']}.\n"
        f"* Prediction MAE on the pre-period's test events: MMoE "
        f"{_round(facts['train_mmoe'].get('test_mae'))}, DeepPRL "
        f"{_round(facts['train_deepprl'].get('test_mae'))}.\n"
        f"* {_check_line(facts['train_deepprl'].get('policy_check'))}")


def _check_line(check: dict[str, Any] | None) -> str:
    """The held-out policy check of DeepPRL's run, which the treatment arm does not act on."""
    if not check or not check.get("checked"):
        return "DeepPRL's held-out policy check: not run."
    verdict = ("learned beats" if check.get("verdict") == "learned"
               else "learned does not beat")
    return (f"DeepPRL's held-out policy check on the pre-period log ({check['users']:.0f} "
            f"held-out consumers): gain {check['gain']:+.4f} over static alpha "
            f"{_round(check.get('static_weights'))} (95% lower bound "
            f"{check['gain_lower_bound']:+.4f}): {verdict} static there. The treatment arm "
            "serves the learned policy all the same (policy.fallback = none): a check on "
            "logged rewards cannot see how alpha changes what consumers do next, which is "
            "what this study measures.")


def _round(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return round(value, 3) if isinstance(value, float) else value


def _heterogeneity(report: Report, df: pd.DataFrame) -> None:
    """Paper §3.2 on the simulated pre-period: the VV-DT relationship varies by consumer
    and context."""
    pre = df[df["period"] == "pre"].copy()
    session = pre.groupby("session_id").agg(vv=("vv", "sum"), dt=("dt", "sum"),
                                            hour=("hour", "first"), vip=("vip", "first"),
                                            age=("age", "first"))
    groups = {
        "all": (pre, session),
        "clicked records only (CTR = 1)": (pre[pre.ctr == 1], None),
        "VIP": (pre[pre.vip == 1], session[session.vip == 1]),
        "not VIP": (pre[pre.vip == 0], session[session.vip == 0]),
        "age < 25": (pre[pre.age < 25], session[session.age < 25]),
        "age >= 40": (pre[pre.age >= 40], session[session.age >= 40]),
        "hour 6-9": (pre[pre.hour.between(6, 9)], session[session.hour.between(6, 9)]),
        "hour 19-23": (pre[pre.hour.between(19, 23)], session[session.hour.between(19, 23)]),
        "video < 10 min": (pre[pre.video_length < 600], None),
        "video >= 60 min": (pre[pre.video_length >= 3600], None),
        "view count < median": (pre[pre.view_count < pre.view_count.median()], None),
        "view count >= median": (pre[pre.view_count >= pre.view_count.median()], None),
    }
    rows = [[name, correlations(rec, ("vv", "dt"))["vv-dt"],
             correlations(ses, ("vv", "dt"))["vv-dt"] if ses is not None else float("nan"),
             len(rec)] for name, (rec, ses) in groups.items()]
    per_user = pre.groupby("user_id")[["vv", "dt"]].apply(
        lambda g: g["vv"].corr(g["dt"]) if g["vv"].std() > 0 and g["dt"].std() > 0
        else np.nan).dropna()
    report.add("## Paper §3.2 on the simulated platform: the VV–DT relationship varies",
               "Pre-period log (legacy ranker). Pearson r between VV and DT on records and "
               "on sessions (sums), by consumer group, hour and video.",
               md_table(["Group", "r (records)", "r (sessions)", "Records"], rows, digits=3),
               f"Per consumer (records, {len(per_user):,} consumers with variation): mean r "
               f"{per_user.mean():.3f}, 10th-90th percentile {per_user.quantile(0.1):.3f} to "
               f"{per_user.quantile(0.9):.3f} (paper, Youku: mean -0.663 at the consumer "
               f"level, 29 % below -0.7).")


def _decompose(report: Report, df: pd.DataFrame, schema: LogSchema) -> None:
    """DESIGN §3 'say where a gain comes from': the third arm serves DeepPRL's predictor
    with one static alpha, so arm-to-arm contrasts split the difference into predictor
    (deepprl-static vs MMoE) and weight policy (DeepPRL vs deepprl-static)."""
    exp = df[df["period"] != "pre"]
    pairs = (("deepprl-static", "control", "predictor: DeepPRL's predictor, static alpha − MMoE"),
             ("treatment", "deepprl-static", "weight policy: DeepPRL − its own predictor with "
                                             "static alpha"),
             ("treatment", "control", "total: DeepPRL − MMoE (Table 12)"))
    rows, out = [], {}
    for treat, control, label in pairs:
        pair_schema = dataclasses.replace(schema, treatment=treat, control=control)
        data = units(two_arms(exp, pair_schema), pair_schema)
        effects = [treatment_effect(data, pair_schema, o) for o in schema.objectives]
        rows.append([label, *[f"{e.cell()} [{100 * e.relative:+.1f} %]" for e in effects],
                     effects[0].consumers])
        out[f"{treat} vs {control}"] = {e.objective: {"coef": e.coef, "se": e.se, "p": e.p}
                                        for e in effects}
    report.data["decomposition"] = out
    report.add("## Where the difference comes from (third arm: DeepPRL's predictor, static "
               "alpha)",
               "Equation (8) on sessions between two arms at a time (clustered SEs; effect "
               "relative to the second arm's mean in brackets). The diagnostic arm serves "
               "DeepPRL's trained predictor with one alpha tuned on validation like MMoE's.",
               md_table(["Contrast", *[o.upper() for o in schema.objectives], "Consumers"],
                        rows))


def _sign(coef: float, p: float) -> str:
    if p >= 0.05:
        return "not significant"
    return "positive" if coef > 0 else "negative"


def _differences(report: Report, df: pd.DataFrame) -> None:
    """One line per analysis on what differs from the paper, from this run's numbers."""
    d = report.data
    main = {o: d["table12"][o]["main"] for o in ("vv", "dt", "ctr")}
    total = {o: d["table14"][o][4] for o in ("vv", "dt", "ctr")}
    t13 = d["table13"]
    pre, post = t13["record: treatment, pre-period"], t13["record: treatment, experiment"]
    treat = df[(df["period"] != "pre") & (df["arm"] == "treatment") & (df["position"] == 0)]
    alphas = treat[["alpha_ctr", "alpha_vv", "alpha_dt"]]
    alpha_std, alpha_top = float(alphas.std().max()), float(alphas.mean().max())
    sessions = df[df["period"] != "pre"].groupby("session_id")["vv"].sum().mean()
    lines = [
        "* **Table 12.** Paper: all three effects positive (p < 0.01). Ours (sessions, "
        "equation 8 with video features): " + ", ".join(
            f"{o.upper()} {_sign(e['coef'], e['p'])} ({e['coef']:+.4g} ± {e['se']:.2g})"
            for o, e in main.items()) + ". Without video features (Table 14, last column: "
        "the total effect of a randomised arm, since what is shown is itself the treatment): "
        + ", ".join(f"{o.upper()} {_sign(e['coef'], e['p'])} ({e['coef']:+.4g})"
                    for o, e in total.items()) + ".",
        f"* **Scale.** A simulated session shows 6 videos and has {sessions:.2f} VV on "
        f"average (paper: ≈ 9.3 VV per session), so absolute effects are not comparable; "
        f"compare the relative effects (Table 12) and the signs.",
        f"* **Weights.** DeepPRL's alpha: largest mean weight {alpha_top:.3f}, largest "
        f"standard deviation across sessions {alpha_std:.4f}. " + (
            "Its actor-critic settled on (close to) one vertex of the simplex for every "
            "consumer and context, so the treatment is, in effect, a static single-objective "
            "ranking on DeepPRL's predictor, not the personalised, contextual weighting the "
            "paper credits for its gain." if alpha_std < 0.01 and alpha_top > 0.9 else
            "See 'Objective weights used by the arms' for how it varies."),
        "* **Table 13.** Paper: every pair's correlation rises after treatment (VV–DT from "
        "-0.163 to 0.196). Ours (treatment group, records, pre → post): " + ", ".join(
            f"{k} {pre.get(k, float('nan')):.3f} → {post.get(k, float('nan')):.3f}"
            for k in ("vv-dt", "vv-ctr", "dt-ctr")) + ". Our records include videos shown but "
        "not watched (VV = DT = 0), which makes VV and DT positively correlated from the "
        "start.",
    ]
    report.add("## What differs from the paper", "\n".join(lines))


def _weights(report: Report, df: pd.DataFrame) -> None:
    """The objective weights each arm used: static for MMoE, per consumer and context for
    DeepPRL."""
    exp = df[(df["period"] != "pre") & (df["position"] == 0)]
    cols = ["alpha_ctr", "alpha_vv", "alpha_dt"]
    rows = []
    for arm, part in exp.groupby("arm"):
        rows.append([f"{arm}: mean", *part[cols].mean().tolist()])
        rows.append([f"{arm}: std across sessions", *part[cols].std().tolist()])
    treat = exp[exp["arm"] == "treatment"]
    for name, part in (("treatment, VIP", treat[treat.vip == 1]),
                       ("treatment, not VIP", treat[treat.vip == 0]),
                       ("treatment, hour 6-9", treat[treat.hour.between(6, 9)]),
                       ("treatment, hour 19-23", treat[treat.hour.between(19, 23)]),
                       ("treatment, new consumers", treat[treat.new_consumer == 1])):
        rows.append([name, *part[cols].mean().tolist()])
    report.add("## Objective weights used by the arms",
               "alpha per session (CTR, VV, DT weights on the simplex).",
               md_table(["Sessions", "alpha CTR", "alpha VV", "alpha DT"], rows, digits=3))
