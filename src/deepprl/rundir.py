"""A run directory is complete or visibly not.

Training writes every file atomically (deepprl.io), keeps its resumable state under
DIR/checkpoint/ and writes DIR/COMPLETE.json last: the code version, the requested config
and a SHA-256 digest of every other file of the run (train.log and checkpoints aside). A
directory without that marker, or whose files no longer match it, is not a run to load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepprl import __version__
from deepprl.io import is_temporary, sha256_file, write_json
from deepprl.provenance import code_version

MARKER = "COMPLETE.json"
CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "train.log"
CHECKPOINT_CONFIG = "config.json"  # in CHECKPOINT_DIR: the config the checkpoints belong to
# what a directory written by 'deepprl train' holds even when it was killed early
# (config.json is artifacts.CONFIG_FILE, named here because artifacts builds on this module)
_RUN_SIGNS = (MARKER, CHECKPOINT_DIR, LOG_FILE, "config.json")


class RunError(ValueError):
    """A run directory that is missing, corrupt, incomplete or incompatible."""


def run_files(run: Path) -> list[str]:
    """The files the marker covers: every file under `run` (relative, '/'-separated) except
    the marker, train.log, checkpoints and leftover temporary files."""
    names = []
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if not path.is_file() or is_temporary(path) or rel.parts[0] == CHECKPOINT_DIR \
                or rel.as_posix() in (MARKER, LOG_FILE):
            continue
        names.append(rel.as_posix())
    return names


def write_marker(run: Path, config: dict[str, Any]) -> None:
    """The completion marker; call it after the run's last file is written."""
    write_json(run / MARKER, {
        "complete": True, "deepprl_version": __version__, "code": code_version(),
        "config": config, "files": {name: sha256_file(run / name) for name in run_files(run)},
    })


def read_marker(run: Path) -> dict[str, Any] | None:
    """The marker's content, None without one; RunError when it is unreadable."""
    path = run / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path}: unreadable completion marker ({err}); retrain with "
                       f"'deepprl train ... --out {run} --overwrite'") from err
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        raise RunError(f"{path}: not a completion marker written by deepprl (no 'files')")
    return marker


def check_complete(run: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The marker of a complete run whose files match their digests and include
    `required`; RunError saying what is missing and how to resume otherwise."""
    marker = read_marker(run)
    if marker is None:
        raise RunError(_incomplete(run, required))
    for name, digest in marker["files"].items():
        path = run / name
        if not path.is_file():
            raise RunError(f"{run}: missing {name} (listed in {MARKER}): the run was "
                           f"changed after training; retrain with "
                           f"'deepprl train ... --out {run} --overwrite'")
        if sha256_file(path) != digest:
            raise RunError(f"{run}: {name} is corrupt or was changed after training (its "
                           f"SHA-256 differs from the one in {MARKER}); retrain with "
                           f"'deepprl train ... --out {run} --overwrite'")
    absent = [name for name in required if name not in marker["files"]]
    if absent:
        raise RunError(f"{run}: the completed run has no {', '.join(absent)}; is this a "
                       f"directory written by 'deepprl train'?")
    return marker


def _incomplete(run: Path, required: tuple[str, ...]) -> str:
    missing = [name for name in required if not (run / name).is_file()]
    what = f"; missing {', '.join(missing)}" if missing else ""
    if not looks_like_run(run):
        return (f"{run}: not a run directory (no {MARKER}{what}); is this a directory "
                f"written by 'deepprl train'?")
    has_checkpoint = (run / CHECKPOINT_DIR / CHECKPOINT_CONFIG).is_file()
    return (f"{run}: incomplete run: no {MARKER} (training was killed or is still "
            f"running){what}. Resume it with 'deepprl train ... --out {run} --resume' "
            f"(the options it was started with; "
            + (f"it continues from the last checkpoint in {run / CHECKPOINT_DIR}"
               if has_checkpoint else "there is no checkpoint, so it starts again")
            + "), or start afresh with --overwrite")


def looks_like_run(folder: Path) -> bool:
    return any((folder / sign).exists() for sign in _RUN_SIGNS)


def _checkpoint_record(run: Path) -> dict[str, Any]:
    path = run / CHECKPOINT_DIR / CHECKPOINT_CONFIG
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # writes are atomic, so only a hand edit gets here: no usable checkpoint
    return saved if isinstance(saved, dict) else {}


def checkpoint_config(run: Path) -> dict[str, Any] | None:
    """The config a run's checkpoints belong to (None without checkpoints)."""
    config = _checkpoint_record(run).get("config")
    return config if isinstance(config, dict) else None


def checkpoint_code(run: Path) -> str | None:
    """The code version that started a run that has checkpoints."""
    code = _checkpoint_record(run).get("code")
    return code if isinstance(code, str) else None


def start_checkpoints(run: Path, config: dict[str, Any]) -> Path:
    """DIR/checkpoint/, recording the config its checkpoints belong to."""
    folder = run / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if checkpoint_config(run) != config:
        write_json(folder / CHECKPOINT_CONFIG, {"config": config, "code": code_version()})
    return folder


def remove_checkpoints(run: Path) -> None:
    shutil.rmtree(run / CHECKPOINT_DIR, ignore_errors=True)


def config_difference(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = ""
                      ) -> list[str]:
    """'field: saved -> wanted' for every leaf where two config dicts differ."""
    out = []
    for key in sorted(set(saved) | set(wanted), key=str):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_difference(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the directory `out` (created if needed) while training
    writes it, so two trainings never write one directory; the kernel releases it when
    the process dies, kill -9 included."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): unlocked
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise RunError(f"--out {out}: another training is writing this directory; wait "
                           f"for it, or choose another --out") from err
        yield
    finally:
        os.close(fd)


def failed_start(out: Path) -> bool:
    """Nothing but the log of a training that stopped on an error before it trained
    anything (train_run leaves only that): nothing to lose, nothing to resume."""
    return [p.name for p in out.iterdir()] == [LOG_FILE]


def forget_failed_start(out: Path) -> None:
    """After an error before anything was trained (no stage checkpoint, no run file),
    leave only the log, so that the next training may start here without --overwrite."""
    names = {p.name for p in out.iterdir()}
    if names <= {LOG_FILE, CHECKPOINT_DIR} and not any(
            p.suffix == ".safetensors" for p in (out / CHECKPOINT_DIR).glob("*")):
        remove_checkpoints(out)


def prepare(out: Path, config: dict[str, Any], *, overwrite: bool = False,
            resume: bool = False) -> str:
    """Make `out` ready for training `config`: "fresh" (empty, or wiped by overwrite),
    "resume" (an incomplete run of the same config, cleaned of everything but its
    checkpoints and log) or "done" (a complete run of the same config, with resume).
    Refuses an existing non-empty directory unless overwrite or resume: never mixes runs."""
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other: overwrite starts "
                         "afresh, resume continues")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return "fresh"
    if failed_start(out):
        _empty(out, keep=())
        return "fresh"
    if not looks_like_run(out):
        raise RunError(f"--out {out}: a non-empty directory that is not a deepprl run; "
                       f"choose a new or empty directory (nothing was deleted)")
    if overwrite:
        _empty(out, keep=())
        return "fresh"
    marker = read_marker(out)
    if not resume:
        held = "a complete run" if marker is not None else "an incomplete run"
        raise RunError(f"--out {out}: already holds {held}; pass --overwrite to replace it, "
                       f"or --resume to continue it with the same options")
    if marker is not None:
        _same_config(out, marker.get("config"), config, "the complete run")
        check_complete(out)
        remove_checkpoints(out)
        return "done"
    saved = checkpoint_config(out)
    if saved is not None:
        _same_config(out, saved, config, "its checkpoint")
    _empty(out, keep=(CHECKPOINT_DIR, LOG_FILE) if saved is not None else (LOG_FILE,))
    return "resume"


def _same_config(out: Path, saved: Any, wanted: dict[str, Any], what: str) -> None:
    if saved == wanted:
        return
    changes = config_difference(saved, wanted) if isinstance(saved, dict) else ["(unknown)"]
    raise RunError(f"--out {out}: cannot resume: {what} was trained with another config "
                   f"({'; '.join(changes[:6])}{' ...' if len(changes) > 6 else ''}); resume "
                   f"with the options it was started with, or start afresh with --overwrite")


def _empty(out: Path, keep: tuple[str, ...]) -> None:
    """Remove everything in `out` but the names in `keep` (and temporaries inside those)."""
    for child in out.iterdir():
        if child.name in keep and not is_temporary(child):
            if child.is_dir():
                for leftover in child.rglob("*"):
                    if is_temporary(leftover):
                        leftover.unlink(missing_ok=True)
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
