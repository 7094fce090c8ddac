"""The synthetic preference log (deepprl.data.synthetic_log) and issue 15's acceptance test on
it: trained through the generic loader with default settings, the learned weights close at
least half of the gap between the best static alpha and the upper bound (metrics.json's
"static" and "oracle" rewards on the test events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from deepprl.data.generic import load_log
from deepprl.data.synthetic_log import (
    PreferenceLog,
    make_frame,
    preference,
    write_preference_log,
)

CLOSED = 0.5
"""Issue 15: learned closes >= 50% of the static-to-upper-bound gap."""


def test_the_log_loads_through_the_generic_loader(tmp_path: Path) -> None:
    data_path, mapping = write_preference_log(tmp_path, PreferenceLog(n_users=12,
                                                                      events_per_user=20))
    data = load_log(data_path, mapping)
    assert data.objective_names == ("taste", "depth")
    assert data.n_users == 12 and data.n_events == 12 * 20
    assert data.user_feature_names == ("segment",)
    assert data.item_feature_names == ("tone", "size")
    assert {"hour_sin", "hour_cos"} <= set(data.context_names)  # the hour reaches the policy
    assert (data.reward >= 0).all() and (data.reward <= 1).all()


def test_preference_moves_with_segment_and_hour() -> None:
    s = PreferenceLog(spread=0.2, swing=0.1)  # inside the clip [0.05, 0.95] at every hour
    hours = np.array([6.0, 18.0])
    for segment in (0, 1):
        w = preference(np.full(2, segment), hours, s)
        assert w[0] - w[1] == pytest.approx(2 * s.swing)  # sin peaks at 6 h, troughs at 18 h
    gap = preference(np.ones(1), np.zeros(1), s) - preference(np.zeros(1), np.zeros(1), s)
    assert gap[0] == pytest.approx(2 * s.spread)
    clipped = preference(np.ones(1), np.full(1, 6.0), PreferenceLog())  # 0.5 + 0.35 + 0.15
    assert clipped[0] == pytest.approx(0.95)


def test_reward_is_the_preference_weighted_value() -> None:
    frame = make_frame(PreferenceLog(n_users=10, events_per_user=15, seed=3))
    hour = (frame["ts"].to_numpy() % 86400) / 3600
    w = preference(frame["segment"].to_numpy(), hour, PreferenceLog())
    expected = w * frame["taste"].to_numpy() + (1 - w) * frame["depth"].to_numpy()
    # the file rounds every value to 4 decimals, hours to the second
    np.testing.assert_allclose(frame["reward"].to_numpy(), expected, atol=5e-4)
    assert frame.group_by("user_id").agg(pl.col("item_id").n_unique())["item_id"].min() == 15
    with pytest.raises(ValueError, match="events_per_user"):
        make_frame(PreferenceLog(n_items=5, events_per_user=6))


def train_defaults(folder: Path, settings: PreferenceLog, seed: int = 0,
                   settings_override: tuple[str, ...] = ()) -> dict[str, Any]:
    """`deepprl train --data --mapping` with default settings (plus any --set given)."""
    from typer.testing import CliRunner

    from deepprl.artifacts import read_json
    from deepprl.cli import app

    data_path, mapping = write_preference_log(folder, settings)
    sets = [a for s in settings_override for a in ("--set", s)]
    result = CliRunner().invoke(app, ["train", "--data", str(data_path), "--mapping",
                                      str(mapping), "--out", str(folder / "run"), "--seed",
                                      str(seed), "--quiet", *sets])
    assert result.exit_code == 0, result.output
    metrics: dict[str, Any] = read_json(folder / "run" / "metrics.json")
    return metrics


def closed_share(metrics: dict[str, Any]) -> float:
    """(learned - static) / (oracle - static) of the test rewards."""
    static, oracle = metrics["static"]["reward"], metrics["oracle"]["reward"]
    assert oracle > static, "no gap between the best static alpha and the upper bound"
    return float((metrics["learned"]["reward"] - static) / (oracle - static))


def test_defaults_close_half_the_static_to_upper_bound_gap(tmp_path: Path) -> None:
    """Full size (200 users), seed 0: about 30 s with the bandit learner. The 40-user log
    closes nothing with defaults: its 8 held-out users give the pessimism check too little
    power to confirm a gain, so the run serves the static alpha (see docs/diagnose.md)."""
    share = closed_share(train_defaults(tmp_path, PreferenceLog(seed=0), seed=0))
    assert share >= CLOSED, f"learned closed {share:.0%} of the gap"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_defaults_close_half_the_gap_other_seeds(tmp_path: Path, seed: int) -> None:
    share = closed_share(train_defaults(tmp_path, PreferenceLog(seed=seed), seed=seed))
    assert share >= CLOSED, f"seed {seed}: learned closed {share:.0%} of the gap"
