"""A run directory is complete or visibly not: every file written atomically, COMPLETE.json
last with a digest of every file, incomplete or changed runs refused with a way out, a
rerun never mixing runs, and the experiments' cache resuming what a kill left."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import without
from deepprl import __version__
from deepprl.artifacts import load_run
from deepprl.cli import app
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.io import atomic_path, save_safetensors, write_json
from deepprl.provenance import code_version
from deepprl.rundir import (
    RunError,
    check_complete,
    locked,
    prepare,
    start_checkpoints,
    write_marker,
)
from deepprl.train.run import train_run

TINY = RunConfig(dataset={"name": "simulator", "n_users": 20, "n_items": 25,
                          "events_per_user": 20},
                 train=TrainConfig(epochs=1),
                 policy=PolicyConfig(steps=30, algorithm="ddpg"),  # stage-2 checkpoints
                 eval=EvalConfig(k=5))
SEED7 = RunConfig.from_dict({**TINY.to_dict(), "seed": 7})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, set[Path]]]:
    """A tiny run, and every path os.replace renamed a file to while it trained."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    renamed: set[Path] = set()
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        renamed.add(Path(dst))
        real(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        train_run(TINY, out)
    yield out, renamed


def _copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "copy")
    return tmp_path / "copy"


def _marker(run: Path) -> dict[str, Any]:
    marker: dict[str, Any] = json.loads((run / "COMPLETE.json").read_text(encoding="utf-8"))
    return marker


# -- written atomically, marked complete last ------------------------------------------------

def test_every_file_of_a_run_is_renamed_into_place(trained: tuple[Path, set[Path]]) -> None:
    run, renamed = trained
    files = {p for p in run.rglob("*") if p.is_file()}
    assert files - renamed == {run / "train.log"}  # a log, appended as training goes
    assert not [p for p in files if ".tmp-" in p.name]


def test_the_marker_is_last_and_covers_every_other_file(trained: tuple[Path, set[Path]]
                                                         ) -> None:
    run, _ = trained
    marker = _marker(run)
    assert marker["complete"] is True and marker["deepprl_version"] == __version__
    assert marker["code"] == code_version()
    assert RunConfig.from_dict(marker["config"]) == TINY
    on_disk = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert set(marker["files"]) == on_disk - {"COMPLETE.json", "train.log"}
    for name, digest in marker["files"].items():
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == digest, name
        assert (run / name).stat().st_mtime_ns <= (run / "COMPLETE.json").stat().st_mtime_ns
    assert not (run / "checkpoint").exists()  # removed once the run is complete


def test_the_marker_is_generic_over_the_directory(tmp_path: Path) -> None:
    """Files others add to a run (tables in a subfolder, say) are covered; the log,
    checkpoints and leftovers of killed writes are not."""
    (tmp_path / "tables").mkdir()
    (tmp_path / "checkpoint").mkdir()
    for name in ("a.json", "tables/items.bin", "train.log", "checkpoint/stage1.safetensors",
                 ".a.json.tmp-1-ab"):
        (tmp_path / name).write_bytes(name.encode())
    write_marker(tmp_path, TINY.to_dict())
    assert set(_marker(tmp_path)["files"]) == {"a.json", "tables/items.bin"}
    check_complete(tmp_path)
    (tmp_path / "tables" / "items.bin").write_bytes(b"changed")
    with pytest.raises(RunError, match=r"tables/items\.bin is corrupt or was changed"):
        check_complete(tmp_path)
    (tmp_path / "tables" / "items.bin").unlink()
    with pytest.raises(RunError, match=r"missing tables/items\.bin"):
        check_complete(tmp_path)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"reward": 1.0})
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as temp:
        temp.write_bytes(b'{"rew')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"reward": 1.0}
    import torch

    save_safetensors(tmp_path / "w.safetensors", {"w": torch.ones(2, 3).t()})  # not contiguous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "w.safetensors"]


# -- incomplete or changed runs are refused ------------------------------------------------

def test_a_run_without_its_marker_is_refused_with_how_to_resume(
        trained: tuple[Path, set[Path]], tmp_path: Path) -> None:
    run = _copy(trained[0], tmp_path)
    (run / "COMPLETE.json").unlink()
    (run / "metrics.json").unlink()  # killed after the weights, before the metrics
    with pytest.raises(RunError, match=r"incomplete run: no COMPLETE\.json.*--resume"):
        load_run(run)
    from deepprl.serve.service import Service

    with pytest.raises(RunError, match="incomplete run"):  # what `deepprl serve` loads
        Service.load(run, db=tmp_path / "feedback.sqlite3")
    for command in (["evaluate", "--run", str(run)],
                    ["recommend", "--run", str(run), "--user", "1"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "incomplete run" in result.output and "--resume" in result.output
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback


def test_a_changed_run_is_refused(trained: tuple[Path, set[Path]], tmp_path: Path) -> None:
    run = _copy(trained[0], tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["learned"]["reward"] = 1.0
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run)])
    assert result.exit_code == 2 and "metrics.json is corrupt or was changed" in result.output


def test_files_added_after_training_do_not_matter(trained: tuple[Path, set[Path]],
                                                  tmp_path: Path) -> None:
    run = _copy(trained[0], tmp_path)
    (run / "serve.sqlite3").write_bytes(b"a feedback store")
    (run / "notes.txt").write_text("mine")
    load_run(run)


# -- a rerun never mixes runs ---------------------------------------------------------------

def test_training_into_an_existing_run_is_refused(trained: tuple[Path, set[Path]]) -> None:
    run = trained[0]
    before = (run / "COMPLETE.json").read_bytes()
    with pytest.raises(RunError, match=r"already holds a complete run.*--overwrite.*--resume"):
        train_run(SEED7, run)
    result = CliRunner().invoke(app, ["train", "--dataset", "simulator", "--quiet", "--seed",
                                      "7", "--out", str(run)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = CliRunner().invoke(app, ["train", "--dataset", "simulator", "--quiet",
                                      "--overwrite", "--resume", "--out", str(run)])
    assert result.exit_code == 2 and "exclude each other" in result.output
    assert (run / "COMPLETE.json").read_bytes() == before


def test_resume_refuses_another_config(trained: tuple[Path, set[Path]], tmp_path: Path
                                       ) -> None:
    with pytest.raises(RunError, match=r"complete run was trained with another config "
                                       r"\(seed: 0 -> 7\)"):
        train_run(SEED7, trained[0], resume=True)
    killed = tmp_path / "killed"
    start_checkpoints(killed, TINY.to_dict())
    with pytest.raises(RunError, match=r"its checkpoint was trained with another config "
                                       r"\(seed: 0 -> 7\).*--overwrite"):
        train_run(SEED7, killed, resume=True)
    assert (killed / "checkpoint" / "config.json").is_file()  # nothing deleted


def test_resume_of_a_complete_run_returns_it(trained: tuple[Path, set[Path]]) -> None:
    run = trained[0]
    assert train_run(TINY, run, resume=True) == json.loads((run / "metrics.json").read_text())


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(RunError, match=r"not a deepprl run.*nothing was deleted"):
        train_run(TINY, tmp_path, overwrite=True)
    assert (tmp_path / "thesis.tex").is_file()


def test_overwrite_replaces_the_whole_run(trained: tuple[Path, set[Path]], tmp_path: Path
                                          ) -> None:
    run = _copy(trained[0], tmp_path)
    (run / "experiment-eval.npz").write_bytes(b"a cache of the old run")
    metrics = train_run(SEED7, run, overwrite=True)
    assert json.loads((run / "seed.txt").read_text()) == 7 == metrics["seed"]
    assert json.loads((run / "config.json").read_text())["seed"] == 7
    assert json.loads((run / "metrics.json").read_text())["seed"] == 7
    assert _marker(run)["config"]["seed"] == 7
    assert not (run / "experiment-eval.npz").exists()
    assert "seed 0" not in (run / "train.log").read_text()
    assert load_run(run)[0].seed == 7


def test_a_directory_being_trained_into_is_locked(tmp_path: Path) -> None:
    with locked(tmp_path / "run"), pytest.raises(RunError, match="another training"):
        train_run(TINY, tmp_path / "run")


def test_an_error_before_training_leaves_only_its_log(tmp_path: Path) -> None:
    bad = RunConfig.from_dict({**TINY.to_dict(), "dataset": {"name": "no-such-dataset"}})
    with pytest.raises(ValueError, match="no-such-dataset"):
        train_run(bad, tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["train.log"]
    assert prepare(tmp_path / "run", TINY.to_dict()) == "fresh"  # a rerun needs no flag
    assert not (tmp_path / "run" / "train.log").exists()


# -- the experiments' run cache --------------------------------------------------------------

class _KilledError(Exception):
    """Stands for kill -9: training stops where it is, nothing runs after."""


def test_the_experiment_cache_resumes_a_killed_run_and_reuses_a_complete_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepprl.experiments.runs import train_or_reuse

    wanted = {**TINY.to_dict(), "policy": {**TINY.to_dict()["policy"], "steps": 210}}
    reference = train_or_reuse(wanted, str(tmp_path / "reference"))

    def kill(stage: str, done: int, total: int, info: dict[str, float]) -> None:
        if stage == "policy" and done == 200:  # just after the stage-2 checkpoint
            raise _KilledError

    cached = tmp_path / "cache"
    with pytest.raises(_KilledError):
        train_run(RunConfig.from_dict(wanted), cached, progress=kill)
    assert (cached / "checkpoint" / "stage2.safetensors").is_file()
    # what the old cache took for a finished run: it is not one
    write_json(cached / "config.json", wanted)
    write_json(cached / "metrics.json", {"bogus": True})
    resumed = train_or_reuse(wanted, str(cached))
    assert without(resumed) == without(reference)
    assert "from its stage2 checkpoint (step 200)" in (cached / "train.log").read_text()
    assert without(json.loads((cached / "metrics.json").read_text())) == without(reference)

    monkeypatch.setattr("deepprl.train.run.train_run",
                        lambda *a, **k: pytest.fail("a complete run was trained again"))
    assert train_or_reuse(wanted, str(cached)) == resumed
