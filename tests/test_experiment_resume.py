"""kill -9 during `deepprl experiment`, then the same command again: the runs that had
completed are reused as they are, the one that was cut short is trained again (or
resumed), and the report equals that of an experiment never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import without

EXPERIMENT = [sys.executable, "-m", "deepprl", "experiment", "table6", "--dataset",
              "simulator", "--quick"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VARIANTS = 4  # the runs of table6 --quick: DeepPRL and its three variants, one seed
VOLATILE = ("code", "seconds")  # the code version and wall-clock figures may differ


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXPERIMENT, "--out", str(root / "reports"), "--runs",
                           str(root / "runs")], env=ENV, capture_output=True, text=True,
                          timeout=600)


def _complete(root: Path) -> list[Path]:
    return sorted((root / "runs").rglob("COMPLETE.json"))


def _kill_after_first_run(root: Path) -> list[Path]:
    """Start the experiment and SIGKILL it as soon as one of its runs is complete; the
    runs complete at that moment."""
    proc = subprocess.Popen([*EXPERIMENT, "--out", str(root / "reports"), "--runs",
                             str(root / "runs")], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not _complete(root):
            assert proc.poll() is None, "the experiment ended before any run completed"
            assert time.monotonic() < deadline, "no run completed within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _complete(root)


def _report(root: Path) -> Any:
    return without(json.loads((root / "reports" / "table6" / "simulator.json")
                              .read_text(encoding="utf-8")), VOLATILE)


def test_a_killed_experiment_resumes_to_the_same_report(tmp_path: Path) -> None:
    reference = _run(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    assert len(_complete(tmp_path / "reference")) == VARIANTS

    killed = tmp_path / "killed"
    done = _kill_after_first_run(killed)
    assert 1 <= len(done) < VARIANTS  # killed between runs: some complete, some not
    assert not (killed / "reports" / "table6" / "simulator.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}

    again = _run(killed)
    assert again.returncode == 0, again.stderr
    assert len(_complete(killed)) == VARIANTS
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # reused, not retrained
    assert _report(killed) == _report(tmp_path / "reference")
