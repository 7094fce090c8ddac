"""Progress lines (train.log, and stderr when it is not a terminal): one per epoch, per
few hundred policy steps and per phase, each with the elapsed time and an ETA."""

from __future__ import annotations

import io
import logging

import pytest

from deepprl.cli.common import Bars
from deepprl.train.progress import BATCH_LINE_SECONDS, POLICY_LINE_STEPS, ProgressLog, duration


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def captured() -> tuple[logging.Logger, list[str]]:
    logger = logging.getLogger("deepprl.test-progress")
    logger.setLevel(logging.INFO)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.handlers = [Keep()]
    logger.propagate = False
    return logger, lines


def test_one_line_per_epoch_with_elapsed_and_eta(captured: tuple[logging.Logger, list[str]]
                                                 ) -> None:
    logger, lines = captured
    clock, seen = _Clock(), []
    progress = ProgressLog(logger=logger, inner=lambda *a: seen.append(a), clock=clock)
    progress("stage 1", 0, 4, {})
    for epoch in range(1, 5):
        for batch in range(1, 11):
            clock.now += 0.2
            progress("predictor", batch, 10, {"epoch": epoch})
        progress("stage 1", epoch, 4, {"epoch": epoch, "loss": 0.5 / epoch})
    assert lines[0] == "stage 1: 4 epochs"
    # 2 s per epoch: after epoch 1, 6 s to go; batches get no line of their own
    assert lines[1] == "stage 1: epoch 1/4, loss 0.5, 2.0 s elapsed, ETA 6.0 s"
    assert lines[3] == "stage 1: epoch 3/4, loss 0.1667, 6.0 s elapsed, ETA 2.0 s"
    assert lines[4].endswith("8.0 s elapsed, ETA 0 s (done)") and len(lines) == 5
    assert len(seen) == 45  # every call reaches the inner callback (the bars)


def test_a_long_epoch_reports_within_it(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    clock = _Clock()
    progress = ProgressLog(logger=logger, clock=clock)
    for batch in range(1, 101):
        clock.now += 1.0
        progress("predictor", batch, 100, {"epoch": 1})
    assert len(lines) == 99 // int(BATCH_LINE_SECONDS)  # one each BATCH_LINE_SECONDS
    assert lines[0].startswith("stage 1: epoch 1 batch 31/100, ")
    assert lines[0].endswith("30.0 s elapsed, ETA 1 min 09 s")  # timed from batch 1


def test_policy_lines_every_few_hundred_steps_and_at_the_end(
        captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    clock = _Clock()
    progress = ProgressLog(logger=logger, clock=clock)
    steps = 2 * POLICY_LINE_STEPS + 50
    progress("policy", 0, steps, {})
    for step in range(1, steps + 1):
        clock.now += 0.01
        info = {"step": step, "greedy_reward": 0.25} if step % 100 == 0 else {}
        progress("policy", step, steps, info)
    assert [line.split(",")[0] for line in lines] == [
        f"stage 2: {steps} steps", f"stage 2: step {POLICY_LINE_STEPS}/{steps}",
        f"stage 2: step {2 * POLICY_LINE_STEPS}/{steps}", f"stage 2: step {steps}/{steps}"]
    assert "greedy_reward 0.25" in lines[1] and "2.0 s elapsed, ETA 2.5 s" in lines[1]


def test_a_resumed_stage_says_so_and_times_only_what_is_left(
        captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    clock = _Clock()
    progress = ProgressLog(logger=logger, clock=clock)
    progress("policy", 200, 400, {})
    clock.now += 10.0
    progress("policy", 300, 400, {})  # no line (not a multiple of 200)
    clock.now += 10.0
    progress("policy", 400, 400, {})
    progress("stage 1", 8, 8, {})
    assert lines == ["stage 2: 400 steps (resumed after 200)",
                     "stage 2: step 400/400, 20.0 s elapsed, ETA 0 s (done)",
                     "stage 1: all 8 epochs done (resumed)"]


def test_phases_log_their_start_and_end(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    clock = _Clock()
    progress = ProgressLog(logger=logger, clock=clock)
    progress("evaluation", 0, 1, {"trials": 40})
    clock.now += 75.0
    progress("evaluation", 1, 1, {})
    assert lines == ["evaluation: started (tuning static weights: 40 Optuna trials)",
                     "evaluation: done in 1 min 15 s"]


def test_durations() -> None:
    assert [duration(s) for s in (0.04, 59.94, 61, 3599.4, 7325)] == \
        ["0.0 s", "59.9 s", "1 min 01 s", "59 min 59 s", "2 h 02 min"]


def test_bars_print_lines_when_stderr_is_not_a_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    train_log = logging.getLogger("deepprl.train")
    level = train_log.level
    train_log.setLevel(logging.INFO)
    try:
        with Bars(enabled=True, terminal=False) as bars:
            ProgressLog(logger=train_log, inner=bars)("evaluation", 0, 1, {})
        ProgressLog(logger=train_log)("evaluation", 0, 1, {})  # after: no longer on stderr
        with Bars(enabled=False, terminal=False) as bars:  # --quiet
            ProgressLog(logger=train_log, inner=bars)("evaluation", 0, 1, {})
    finally:
        train_log.setLevel(level)
    assert stream.getvalue().count("evaluation: started") == 1
    assert bars.progress.disable
