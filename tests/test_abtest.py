"""The online-experiment simulation and the paper's A/B analyses (deepprl.abtest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from deepprl.abtest.analysis import (
    LogSchema,
    balance,
    check_log,
    treatment_effect,
    units,
)
from deepprl.abtest.platform import Platform, PlatformConfig
from deepprl.abtest.serving import BUCKETS, assign_treatment, clock_steps, hash_bucket
from deepprl.data.encode import time_context


def test_hash_assignment_is_stable_and_balanced() -> None:
    # a fixed value: the bucket must not change across runs, machines or Python versions
    # (blake2b(b"deepprl-ab-2021:u000042", digest_size=8), big-endian, mod 10000)
    assert hash_bucket("u000042", "deepprl-ab-2021") == 7642
    ids = [f"u{i:06d}" for i in range(20_000)]
    treated = assign_treatment(ids, salt="s1")
    assert abs(treated.mean() - 0.5) < 0.015
    assert np.array_equal(treated, assign_treatment(ids, salt="s1"))
    other = assign_treatment(ids, salt="s2")
    assert 0.4 < (treated == other).mean() < 0.6  # a new salt re-randomises
    assert abs(assign_treatment(ids, salt="s1", share=0.2).mean() - 0.2) < 0.015
    assert all(0 <= hash_bucket(u, "x") < BUCKETS for u in ids[:100])
    with pytest.raises(ValueError, match=r"treatment share must lie in \(0, 1\), got 1.0"):
        assign_treatment(ids, share=1.0)


def _synthetic(seed: int, effect: float, users: int = 400, per_user: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i}" for i in range(users)])
    treated = assign_treatment(ids, salt=f"t{seed}")
    age = rng.integers(18, 60, users)
    vip = rng.integers(0, 2, users)
    person = rng.normal(0, 2.0, users)  # within-consumer correlation: clustering matters
    u = np.repeat(np.arange(users), per_user)
    n = len(u)
    length = rng.uniform(60, 3600, n)
    day = rng.integers(0, 5, n)
    y = (1.0 + effect * treated[u] + 0.02 * age[u] + 0.5 * vip[u] + 0.0005 * length
         + 0.1 * day + person[u] + rng.normal(0, 1 + treated[u], n))
    return pd.DataFrame({
        "user_id": ids[u], "arm": np.where(treated[u], "treatment", "control"), "day": day,
        "vv": y, "dt": 10 * y, "ctr": (y > 2).astype(float), "age": age[u],
        "active_days": rng.integers(1, 30, users)[u],
        "gender": rng.choice(["f", "m"], users)[u], "province": rng.choice(["a", "b", "c"],
                                                                           users)[u],
        "city": rng.choice(["x", "y"], users)[u], "os": rng.choice(["ios", "android"], users)[u],
        "vip": vip[u], "view_count": rng.integers(10, 10_000, n), "comment_count":
        rng.integers(0, 100, n), "release_days": rng.integers(0, 300, n),
        "video_length": length, "genre": rng.choice(["drama", "news"], n),
        "session_id": np.arange(n), "period": "experiment", "premium": 0, "new_consumer": 0,
        "new_video": 0})


def test_ols_recovers_a_planted_effect_with_robust_errors() -> None:
    df = _synthetic(seed=3, effect=0.8)
    schema = LogSchema()
    data = units(df, schema, "record")
    effect = treatment_effect(data, schema, "vv")
    assert effect.ci_low < 0.8 < effect.ci_high
    assert effect.p < 0.05 and effect.observations == len(df)
    # clustered by consumer: wider than the iid errors when consumers carry their own level
    plain = smf.ols('Q("vv") ~ treatment + age + vip + video_length + C(day)', data).fit()
    assert effect.se > 1.5 * plain.bse["treatment"]
    hc1 = treatment_effect(data, schema, "vv", cov="HC1")
    assert hc1.coef == pytest.approx(effect.coef) and hc1.se != pytest.approx(effect.se)
    null = treatment_effect(units(_synthetic(seed=4, effect=0.0), schema, "record"), schema, "vv")
    assert null.ci_low < 0.0 < null.ci_high


def test_balance_of_a_randomised_log_has_no_tiny_p_values() -> None:
    rows = balance(_synthetic(seed=5, effect=0.5, users=2000, per_user=2), LogSchema())
    assert {r["feature"] for r in rows} == {"age", "active_days", "gender", "province", "city",
                                            "os", "vip"}
    for r in rows:
        assert r["ranksum_p"] > 0.01, r
        assert np.isnan(r["chi2_p"]) or r["chi2_p"] > 0.01, r


def test_balance_flags_an_unbalanced_log() -> None:
    df = _synthetic(seed=6, effect=0.0, users=1000, per_user=2)
    df.loc[df["arm"] == "treatment", "age"] += 5  # treatment consumers are older
    p = {r["feature"]: r["ranksum_p"] for r in balance(df, LogSchema())}
    assert p["age"] < 1e-6


def test_sessions_sum_vv_dt_and_average_ctr() -> None:
    df = _synthetic(seed=7, effect=0.0, users=3, per_user=2)
    df["session_id"] = np.repeat([0, 1, 2], 2)
    df["vv"], df["dt"], df["ctr"] = [1, 0, 1, 1, 0, 0], [10, 20, 30, 40, 0, 0], [1, 0, 1, 1, 0, 1]
    sessions = units(df, LogSchema(), "session").set_index("session_id")
    assert sessions["vv"].tolist() == [1, 2, 0]
    assert sessions["dt"].tolist() == [30, 70, 0]
    assert sessions["ctr"].tolist() == [0.5, 1.0, 0.5]


def test_check_log_names_missing_columns() -> None:
    df = _synthetic(seed=8, effect=0.0, users=10, per_user=1).drop(columns=["age"])
    with pytest.raises(ValueError, match="age"):
        check_log(df, LogSchema())


def test_clock_steps_match_the_training_encoding() -> None:
    times = np.array([[1_609_459_200.0, 1_609_459_201.0], [1_609_500_000.0, 1_609_500_005.0]])
    prev = np.array([np.nan, 1_609_400_000.0])
    got = clock_steps(times, prev)
    for b in range(2):
        lead = times[b, 0] if np.isnan(prev[b]) else prev[b]
        want, _ = time_context(np.zeros(3, dtype=np.int64), np.r_[lead, times[b]],
                               has_clock=True)
        np.testing.assert_allclose(got[b], want[1:])


def test_platform_objectives_trade_off_differently_by_video_length() -> None:
    config = PlatformConfig(consumers=3000, videos=300, seed=1)
    platform = Platform.build(config, days=3, pre_days=2)
    rng = np.random.default_rng(0)
    users = np.arange(3000)
    shown = platform.candidates(users, 0, rng)[:, : config.slots]
    resp = platform.respond(users, shown, np.full(3000, 20), rng)
    assert set(np.unique(resp["ctr"])) <= {0.0, 1.0} and (resp["dt"] >= 0).all()
    length = platform.videos.length_min[shown]
    clicked = resp["ctr"] > 0
    short = clicked & (length < 10)
    long = clicked & (length > 60)
    # short videos are finished far more often, long ones hold far more dwell time
    assert resp["vv"][short].mean() > 2 * resp["vv"][long].mean()
    assert resp["dt"][long].mean() > 3 * resp["dt"][short].mean()


def test_quick_experiment_writes_its_report(tmp_path: Path) -> None:
    from deepprl.experiments import Context, run_experiment

    ctx = Context(dataset="abtest-sim", quick=True, out=tmp_path / "reports",
                  runs=tmp_path / "runs", command="deepprl experiment abtest --quick")
    md = run_experiment("abtest", ctx)
    folder = tmp_path / "reports" / "abtest"
    assert md == folder / "abtest-sim.md"
    for name in ("figure12", "figure13", "figure14"):
        assert (folder / f"abtest-sim-{name}.png").stat().st_size > 0
    data = json.loads((folder / "abtest-sim.json").read_text())
    for objective in ("vv", "dt", "ctr"):
        main = data["table12"][objective]["main"]
        assert main["se"] > 0 and main["ci_low"] < main["coef"] < main["ci_high"]
    text = md.read_text()
    assert text.splitlines()[2] == "Made by: `deepprl experiment abtest --quick`"
    assert "Table 11" in text and "Table 15" in text and "Figure 14" in text


def test_analyse_own_log_from_csv(tmp_path: Path) -> None:
    from deepprl.abtest.report import analyse_file

    df = _synthetic(seed=9, effect=0.5, users=300, per_user=4)
    df = df.rename(columns={"user_id": "uid"})
    path = tmp_path / "mylog.csv"
    df.to_csv(path, index=False)
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps({"user": "uid"}))
    md = analyse_file(path, out=tmp_path / "out", schema=LogSchema.from_file(schema_path))
    assert md.name == "mylog.md" and "Table 12" in md.read_text()
    with pytest.raises(ValueError, match="user_id"):
        analyse_file(path, out=tmp_path / "out")


def test_schema_file_rejects_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"objectives": "vv"}))
    with pytest.raises(ValueError, match="objectives must be a list"):
        LogSchema.from_file(path)
    path.write_text(json.dumps({"colour": "x"}))
    with pytest.raises(ValueError, match="keys among"):
        LogSchema.from_file(path)
    path.write_text(json.dumps({"session": None, "objectives": ["a", "b"]}))
    schema = LogSchema.from_file(path)
    assert schema.session is None and schema.objectives == ("a", "b")


def test_named_arms_follow_their_shares() -> None:
    from deepprl.abtest.serving import assign_arms

    ids = [f"u{i:06d}" for i in range(20_000)]
    arms = assign_arms(ids, {"control": 0.4, "treatment": 0.4, "extra": 0.2}, salt="s1")
    for name, share in (("control", 0.4), ("treatment", 0.4), ("extra", 0.2)):
        assert abs((arms == name).mean() - share) < 0.015
    # the same buckets as the two-arm assignment: the first 40 % of buckets are control
    assert np.array_equal(arms == "control", assign_treatment(ids, salt="s1", share=0.4))
    with pytest.raises(ValueError, match="arms need two or more positive shares summing to 1"):
        assign_arms(ids, {"a": 0.5, "b": 0.6})


def test_cli_abtest_analyse(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepprl.cli import app

    path = tmp_path / "log.parquet"
    _synthetic(seed=10, effect=0.5, users=200, per_user=3).to_parquet(path)
    result = CliRunner().invoke(app, ["abtest", "analyse", "--log", str(path), "--unit",
                                      "record", "--cov", "HC1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "abtest" / "log.md").read_text()
    assert "--unit record --cov HC1" in text and "Unit: records" in text
    bad = CliRunner().invoke(app, ["abtest", "analyse", "--log", str(tmp_path / "none.csv")])
    assert bad.exit_code == 2 and "not found" in bad.output
