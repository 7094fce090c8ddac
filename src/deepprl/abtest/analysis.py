"""The paper's A/B analyses (§7) on any log with the right columns.

A log has one row per shown video (a *record*). LogSchema names its columns; the
defaults are those the simulation writes (docs/abtest.md lists them). Everything here
takes a pandas DataFrame and a LogSchema, so a team can point it at its own experiment.

Unit of analysis: the paper reports effects "in each session" (VV +0.474, 5.09 % of the
mean), so regressions run on sessions by default: VV and DT are summed over a session's
records, CTR is the share of its records clicked; consumer features are the consumer's,
numeric video features are means over the session's videos and categorical ones are the
first slot's. `unit="record"` runs the same regressions on records (equation 8 as written).
Filters (premium content, new videos) drop records *before* sessions are formed.

Treatment effects always come from statsmodels (formula API): the coefficient of the
treatment dummy, its robust standard error (clustered by consumer by default; HC1 on
request), p-value and 95 % confidence interval.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from deepprl.eval.metrics import pair_correlations


@dataclass(frozen=True)
class LogSchema:
    """Column names of an A/B log (one row per shown video)."""

    user: str = "user_id"
    """Consumer id: the unit of randomisation and of clustering."""
    arm: str = "arm"
    """Arm of the consumer."""
    treatment: str = "treatment"
    """Value of `arm` that marks the treatment."""
    control: str | None = "control"
    """Value of `arm` that marks the control; rows of other arms are left out of the
    two-arm analyses (None: every non-treatment row is control)."""
    day: str = "day"
    """Day of the record (integer or date): the time fixed effects."""
    objectives: tuple[str, ...] = ("vv", "dt", "ctr")
    """Objective columns: the first two are the pair of Figures 12-13 (VV, DT)."""
    consumer_numeric: tuple[str, ...] = ("age", "active_days")
    """Numeric consumer features (balance test, regressions)."""
    consumer_categorical: tuple[str, ...] = ("gender", "province", "city", "os", "vip")
    """Categorical consumer features."""
    video_numeric: tuple[str, ...] = ("view_count", "comment_count", "release_days",
                                      "video_length")
    """Numeric video features."""
    video_categorical: tuple[str, ...] = ("genre",)
    """Categorical video features."""
    session: str | None = "session_id"
    """Session id (None: the log has no sessions; the analyses then run on records)."""
    period: str | None = "period"
    """Column whose value `pre_value` marks pre-period rows (None: no pre-period)."""
    pre_value: str = "pre"
    """Value of `period` for pre-period rows; every analysis but the pre/post
    correlation uses the other rows."""
    premium: str | None = "premium"
    """0/1: premium content (Table 15 (b) drops these records)."""
    new_consumer: str | None = "new_consumer"
    """0/1: the consumer joined during the experiment (Table 15 (c), Figure 14)."""
    new_video: str | None = "new_video"
    """0/1: newly released video (Table 15 (c) drops these records)."""
    length: str = "video_length"
    """Video length, for Figure 12 (a)."""
    popularity: str = "view_count"
    """Video popularity, for Figure 12 (b)."""

    @classmethod
    def from_file(cls, path: str | Path) -> LogSchema:
        """Overrides of the defaults from a JSON object (unknown keys are an error)."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or set(raw) - names:
            raise ValueError(f"{path}: expected a JSON object with keys among {sorted(names)}")
        defaults = cls()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(getattr(defaults, key), tuple):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{path}: {key} must be a list of column names")
                values[key] = tuple(value)
            elif isinstance(value, str) or (value is None and key in _OPTIONAL):
                values[key] = value
            else:
                raise ValueError(f"{path}: {key} must be a column name"
                                 + (" or null" if key in _OPTIONAL else ""))
        return dataclasses.replace(defaults, **values)

    def required(self) -> list[str]:
        cols = [self.user, self.arm, self.day, *self.objectives, *self.consumer_features,
                *self.video_numeric, *self.video_categorical]
        optional = (self.session, self.period, self.premium, self.new_consumer,
                    self.new_video)
        return cols + [c for c in optional if c is not None]

    @property
    def consumer_features(self) -> tuple[str, ...]:
        return self.consumer_numeric + self.consumer_categorical


_OPTIONAL = ("control", "session", "period", "premium", "new_consumer", "new_video")


def check_log(df: pd.DataFrame, schema: LogSchema) -> None:
    """ValueError naming every missing column, the arms found, or an empty log."""
    missing = [c for c in schema.required() if c not in df.columns]
    if missing:
        raise ValueError(f"the A/B log lacks the columns {missing} (see LogSchema / "
                         f"docs/abtest.md; pass a schema to rename)")
    if len(df) == 0:
        raise ValueError("the A/B log is empty")
    arms = experiment_rows(df, schema)[schema.arm].astype(str).unique()
    control_ok = len(arms) >= 2 if schema.control is None else schema.control in arms
    if schema.treatment not in arms or not control_ok:
        raise ValueError(f"the log needs a treatment arm {schema.treatment!r} and a control "
                         f"arm {schema.control or '(any other value)'!r}; found "
                         f"{sorted(arms)}")


def two_arms(df: pd.DataFrame, schema: LogSchema) -> pd.DataFrame:
    """The rows of the treatment and control arms (all rows when control is None)."""
    if schema.control is None:
        return df
    return df[df[schema.arm].astype(str).isin([schema.treatment, schema.control])]


def experiment_rows(df: pd.DataFrame, schema: LogSchema) -> pd.DataFrame:
    if schema.period is None:
        return df
    return df[df[schema.period].astype(str) != schema.pre_value]


def units(df: pd.DataFrame, schema: LogSchema, unit: str = "session",
          extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Records -> analysis units with a `treatment` 0/1 column (see module docstring);
    `extra` columns are carried over (a session's first value)."""
    if unit not in ("session", "record"):
        raise ValueError(f"unit must be 'session' or 'record', got {unit!r}")
    out = df.copy()
    out["treatment"] = (out[schema.arm].astype(str) == schema.treatment).astype(np.int64)
    if unit == "record" or schema.session is None:
        return out
    first = [schema.user, schema.arm, "treatment", schema.day, *schema.consumer_features,
             *schema.video_categorical]
    first += [c for c in (schema.period, schema.new_consumer) if c is not None] + list(extra)
    agg: dict[str, Any] = {c: "first" for c in dict.fromkeys(first)}
    agg.update({c: "mean" for c in schema.video_numeric})
    for objective in schema.objectives:  # a rate is averaged, counts and seconds summed
        agg[objective] = "mean" if objective.lower() == "ctr" else "sum"
    return out.groupby(schema.session, sort=False).agg(agg).reset_index()


@dataclass(frozen=True)
class Effect:
    """The treatment coefficient of one regression."""

    objective: str
    coef: float
    se: float
    p: float
    ci_low: float
    ci_high: float
    r2: float
    observations: int
    consumers: int
    control_mean: float
    cov: str

    def cell(self) -> str:
        """'0.4742*** (0.0611)' as in the paper's tables."""
        stars = "***" if self.p < 0.01 else "**" if self.p < 0.05 else "*" if self.p < 0.1 \
            else ""
        return f"{_num(self.coef)}{stars} ({_num(self.se)})"

    @property
    def relative(self) -> float:
        return self.coef / self.control_mean if self.control_mean else float("nan")


def _num(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.3f}"


def formula(y: str, schema: LogSchema, *, consumer: bool = True, video: bool = True,
            time_fe: bool = True) -> str:
    """Equation (8): y ~ treatment + consumer features + video features + day effects."""
    terms = ["treatment"]
    if consumer:
        terms += [f'Q("{c}")' for c in schema.consumer_numeric]
        terms += [f'C(Q("{c}"))' for c in schema.consumer_categorical]
    if video:
        terms += [f'Q("{c}")' for c in schema.video_numeric]
        terms += [f'C(Q("{c}"))' for c in schema.video_categorical]
    if time_fe:
        terms.append(f'C(Q("{schema.day}"))')
    return f'Q("{y}") ~ ' + " + ".join(terms)


def treatment_effect(data: pd.DataFrame, schema: LogSchema, objective: str, *,
                     consumer: bool = True, video: bool = True, time_fe: bool = True,
                     cov: str = "cluster") -> Effect:
    """OLS of `objective` on the treatment dummy and controls, robust standard errors:
    cov = 'cluster' (by consumer) or 'HC1'."""
    if data["treatment"].nunique() < 2:
        raise ValueError("both arms must be present to estimate a treatment effect")
    model = smf.ols(formula(objective, schema, consumer=consumer, video=video,
                            time_fe=time_fe and data[schema.day].nunique() > 1), data=data)
    if cov not in ("cluster", "HC1"):
        raise ValueError(f"cov must be 'cluster' or 'HC1', got {cov!r}")
    _check_identified(model.exog, model.exog_names.index("treatment"))
    with warnings.catch_warnings():  # nested features (city within province) are collinear
        warnings.simplefilter("ignore", SingularMatrixWarning)
        if cov == "cluster":
            groups = pd.factorize(data[schema.user])[0]
            fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
        else:
            fit = model.fit(cov_type="HC1")
    low, high = fit.conf_int().loc["treatment"]
    control = data.loc[data["treatment"] == 0, objective]
    return Effect(objective=objective, coef=float(fit.params["treatment"]),
                  se=float(fit.bse["treatment"]), p=float(fit.pvalues["treatment"]),
                  ci_low=float(low), ci_high=float(high), r2=float(fit.rsquared),
                  observations=int(fit.nobs), consumers=int(data[schema.user].nunique()),
                  control_mean=float(control.mean()), cov=cov)


def _check_identified(exog: np.ndarray, column: int) -> None:
    """The treatment coefficient is estimable only if the treatment column adds to the rank
    of the controls; collinear controls among themselves are harmless (pinv)."""
    gram = exog.T @ exog
    others = np.delete(np.delete(gram, column, 0), column, 1)
    if np.linalg.matrix_rank(gram) <= np.linalg.matrix_rank(others):
        raise ValueError("the treatment dummy is collinear with the controls (a control "
                         "column repeats the arm?): its effect is not identified")


def balance(df: pd.DataFrame, schema: LogSchema) -> list[dict[str, Any]]:
    """Table 11: per consumer feature, Wilcoxon rank-sum p-value between arms (one row per
    consumer). Categorical features: the rank-sum test on each level's indicator,
    Bonferroni-adjusted minimum over levels, and a chi-square test of independence."""
    consumers = experiment_rows(two_arms(df, schema), schema).groupby(schema.user).first()
    treated = consumers[schema.arm].astype(str) == schema.treatment
    rows = []
    for feature in schema.consumer_features:
        values = consumers[feature]
        if feature in schema.consumer_numeric:
            p = float(stats.ranksums(values[treated], values[~treated]).pvalue)
            rows.append({"feature": feature, "kind": "numeric", "ranksum_p": p,
                         "chi2_p": float("nan")})
            continue
        levels = values.astype(str)
        ps = [float(stats.ranksums((levels[treated] == lv).astype(float),
                                   (levels[~treated] == lv).astype(float)).pvalue)
              for lv in levels.unique()]
        table = pd.crosstab(levels, treated)
        chi2 = float(stats.chi2_contingency(table.to_numpy())[1]) if table.shape[0] > 1 \
            else 1.0
        rows.append({"feature": feature, "kind": f"categorical ({len(ps)} levels)",
                     "ranksum_p": min(1.0, min(ps) * len(ps)), "chi2_p": chi2})
    return rows


def correlations(df: pd.DataFrame, objectives: tuple[str, ...]) -> dict[str, float]:
    """Pearson correlation of every pair of objectives ('vv-dt': r)."""
    return pair_correlations(df[list(objectives)].to_numpy(float), tuple(objectives))


def correlation_by_bins(df: pd.DataFrame, column: str, pair: tuple[str, str], *,
                        bins: int = 4) -> pd.DataFrame:
    """Pearson r of `pair` within quantile bins of `column` (for Figure 12)."""
    codes, edges = pd.qcut(df[column], q=bins, labels=False, retbins=True, duplicates="drop")
    rows = []
    for code in sorted(codes.dropna().unique()):
        part = df[codes == code]
        r = correlations(part, pair)[f"{pair[0]}-{pair[1]}"]
        rows.append({"bin": int(code), "low": float(edges[int(code)]),
                     "high": float(edges[int(code) + 1]), "r": r, "n": len(part)})
    return pd.DataFrame(rows)


def daily_effects(data: pd.DataFrame, schema: LogSchema, objective: str, *,
                  by: str | None = None, cov: str = "cluster", time_fe: bool = False
                  ) -> list[Effect | None]:
    """Figure 13: the equation (8) regression run on each value of `by` (default: day)
    separately (time_fe: with day effects where a group spans several days); None where
    one arm is missing or the group has 50 rows or fewer."""
    by = by or schema.day
    out: list[Effect | None] = []
    for _, part in data.groupby(by, sort=True):
        enough = part["treatment"].nunique() == 2 and len(part) > 50
        out.append(treatment_effect(part, schema, objective, time_fe=time_fe, cov=cov)
                   if enough else None)
    return out


def first_seen(df: pd.DataFrame, schema: LogSchema) -> pd.Series:
    """Per row: days since the consumer's first experiment day in the log."""
    rows = experiment_rows(df, schema)
    day = pd.to_numeric(rows[schema.day])
    return day - day.groupby(rows[schema.user]).transform("min")
