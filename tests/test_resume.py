"""kill -9 during training, then `deepprl train ... --resume`: the same run as one never
interrupted (same seed, one thread), in stage 1 and in stage 2; the killed run is refused
by `deepprl evaluate` meanwhile. Each kill lands right after a checkpoint: the test reads
the progress lines the process prints on stderr (a pipe, not a terminal) as it trains."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import without
from deepprl.cli import app
from deepprl.train.checkpoint import Checkpoints

# stage-2 checkpoints at steps 200 and 300; after each kill point, ~1 s of training is
# left before the next checkpoint, so the kill lands between the two
EPOCHS, STEPS = 8, 300
OPTIONS = ["--dataset", "simulator", "--dataset-option", "n_users=25",
           "--dataset-option", "n_items=30", "--dataset-option", "events_per_user=20",
           "--epochs", str(EPOCHS), "--policy-steps", str(STEPS), "--k", "5", "--seed", "3",
           "--set", "policy.batch_size=32", "--set", "policy.hidden=16",
           # a step-wise learner with stage-2 checkpoints (the default bandit learns in
           # seconds and is relearnt, identically, on resume)
           "--set", "policy.algorithm=ddpg"]
TRAIN = [sys.executable, "-m", "deepprl", "train", *OPTIONS]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Path]]:
    """An uninterrupted run, trained in the background while the tests kill theirs; call
    it to wait for it."""
    root = tmp_path_factory.mktemp("reference")
    with open(root / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([*TRAIN, "--quiet", "--out", str(root / "run")], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=stderr)

    def finished() -> Path:
        assert proc.wait(timeout=300) == 0, (root / "stderr.txt").read_text()
        return root / "run"

    yield finished
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _read_until(proc: subprocess.Popen[bytes], needle: str, timeout: float = 240.0) -> str:
    """stderr of `proc` up to the first line holding `needle`."""
    assert proc.stderr is not None
    fd, buf, deadline = proc.stderr.fileno(), b"", time.monotonic() + timeout
    while needle.encode() not in buf:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} within {timeout} s; stderr: {buf.decode()}"
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"training ended before {needle!r}; stderr: {buf.decode()}"
            buf += chunk
    return buf.decode()


def _kill_after(out: Path, line: str) -> str:
    """Start training into `out` and SIGKILL it when stderr shows `line` (printed right
    after the checkpoint it names is written); returns what stderr showed."""
    proc = subprocess.Popen([*TRAIN, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        shown = _read_until(proc, line)
        # progress arrives while training runs, in train.log too, not batched at the end
        assert proc.poll() is None
        assert line in (out / "train.log").read_text(encoding="utf-8")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "COMPLETE.json").exists()
    return shown


def _refused_then_resumed(out: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--run", str(out)])
    assert result.exit_code == 2, result.output
    assert "incomplete run" in result.output and "--resume" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    again = CliRunner().invoke(app, ["train", *OPTIONS, "--quiet", "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output  # no silent restart
    resumed = subprocess.run([*TRAIN, "--quiet", "--resume", "--out", str(out)], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / "checkpoint").exists()


def _assert_same_run(run: Path, reference: Path) -> None:
    ours, theirs = (json.loads((r / "metrics.json").read_text()) for r in (run, reference))
    assert without(ours) == without(theirs)  # exact: every metric, loss and log record
    mine, ref = (json.loads((r / "COMPLETE.json").read_text())["files"]
                 for r in (run, reference))
    assert set(mine) == set(ref)
    for name in set(ref) - {"metrics.json"}:  # weights, config, schema, seed: bit for bit
        assert mine[name] == ref[name], name


def test_kill_in_stage_1_then_resume_equals_an_uninterrupted_run(
        reference: Callable[[], Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shown = _kill_after(out, f"stage 1: epoch 1/{EPOCHS}")
    assert "stage 2" not in shown
    position = Checkpoints(folder=out / "checkpoint").position("stage1")
    assert position is not None and 1 <= len(position["log"]) < EPOCHS  # killed mid stage 1
    assert not (out / "checkpoint" / "stage2.safetensors").exists()
    _refused_then_resumed(out)
    assert "from its stage1 checkpoint" in (out / "train.log").read_text()
    _assert_same_run(out, reference())


def test_kill_in_stage_2_then_resume_equals_an_uninterrupted_run(
        reference: Callable[[], Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shown = _kill_after(out, f"stage 2: step 200/{STEPS}")
    assert f"stage 1: epoch {EPOCHS}/{EPOCHS}" in shown  # every epoch's line, as it ended
    position = Checkpoints(folder=out / "checkpoint").position("stage2")
    assert position is not None and position["step"] == 200  # killed mid stage 2
    _refused_then_resumed(out)
    assert "from its stage2 checkpoint (step 200)" in (out / "train.log").read_text()
    _assert_same_run(out, reference())
