"""Training progress as log lines, as it happens: one per stage-1 epoch, per few hundred
policy steps and per phase (tuning, evaluation), each with the elapsed time and an ETA.

They go to train.log (and, from the CLI when stderr is not a terminal, to stderr), so a
run under CI, nohup or a redirected log shows where it is while it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from deepprl.train.stage1 import Progress

POLICY_LINE_STEPS = 200  # a stage-2 line every this many steps (and at the last)
BATCH_LINE_SECONDS = 30.0  # within a long stage-1 epoch, a line at most this often


@dataclass
class _Clock:
    """When a stage was first seen in this process, and how far it was then."""

    started: float
    done: int
    last_line: float


def duration(seconds: float) -> str:
    """'4.2 s', '3 min 07 s', '2 h 05 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressLog:
    """A Progress callback that logs progress lines to `logger` and passes every call on to
    `inner` (e.g. the CLI's progress bars)."""

    def __init__(self, *, logger: logging.Logger, inner: Progress | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.logger, self.inner, self.clock = logger, inner, clock
        self.clocks: dict[str, _Clock] = {}

    def __call__(self, stage: str, done: int, total: int, info: dict[str, float]) -> None:
        if self.inner is not None:
            self.inner(stage, done, total, info)
        line = self.line(stage, done, total, info)
        if line is not None:
            self.logger.info("%s", line)

    def line(self, stage: str, done: int, total: int, info: dict[str, float]) -> str | None:
        """The line for this call, or None when this call gets none."""
        now = self.clock()
        key = f"{stage} {int(info['epoch'])}" if stage == "predictor" else stage
        clock = self.clocks.get(key)
        if clock is None or done < clock.done:  # first call, or a stage started again
            clock = self.clocks[key] = _Clock(started=now, done=done, last_line=now)
            if total > 1 and stage != "predictor":
                if done >= total:
                    return f"{_title(stage)}: all {total} {_unit(stage)}s done (resumed)"
                resumed = f" (resumed after {done})" if done > 0 else ""
                return f"{_title(stage)}: {total} {_unit(stage)}s{resumed}"
        if not self._wants_line(stage, done, total, now - clock.last_line):
            return None
        clock.last_line = now
        elapsed = now - clock.started
        if total == 1:  # a one-step phase: its start and its end
            if done:
                return f"{stage}: done in {duration(elapsed)}"
            trials = int(info.get("trials", 0))
            return f"{stage}: started" + (f" (tuning static weights: {trials} Optuna trials)"
                                          if trials else "")
        timing = f"{duration(elapsed)} elapsed, ETA {self._eta(clock, done, total, elapsed)}"
        where = (f"epoch {int(info['epoch'])} batch {done}/{total}" if stage == "predictor"
                 else f"{_unit(stage)} {done}/{total}")
        values = ", ".join(f"{name} {info[name]:.4g}" for name in _SHOWN if name in info)
        return f"{_title(stage)}: {where}, {values + ', ' if values else ''}{timing}"

    @staticmethod
    def _wants_line(stage: str, done: int, total: int, since_line: float) -> bool:
        if stage == "predictor":  # the epoch's own line says when it ends
            return done < total and since_line >= BATCH_LINE_SECONDS
        if stage == "policy":
            return done == total or done % POLICY_LINE_STEPS == 0
        return done > 0 or total == 1

    @staticmethod
    def _eta(clock: _Clock, done: int, total: int, elapsed: float) -> str:
        if done >= total:
            return "0 s (done)"
        if done <= clock.done:
            return "unknown"
        return duration(elapsed / (done - clock.done) * (total - done))


_SHOWN = ("loss", "td_loss", "explore_reward", "greedy_reward")


def _unit(stage: str) -> str:
    return {"stage 1": "epoch", "policy": "step"}.get(stage, "step")


def _title(stage: str) -> str:
    return {"policy": "stage 2", "predictor": "stage 1"}.get(stage, stage)


def phase(progress: Progress | None, name: str, done: int, *, trials: int = 0) -> None:
    """A one-step phase (tuning, evaluation): its start (0) and its end (1); `trials`:
    the static-weight tuning trials it runs."""
    if progress is not None:
        progress(name, done, 1, {"trials": trials} if trials else {})
