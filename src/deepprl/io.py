"""Crash-safe file writes: a file is either its old content or its complete new content.

Every write goes to a temporary file in the same directory, is fsynced, renamed over the
final name (os.replace is atomic within a filesystem) and the directory is fsynced, so a
kill -9 or a power cut never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch only to save tensors: reading a run (recommend) never imports it
    import torch

TEMP_MARK = ".tmp-"  # in the name of every temporary file: a leftover is never a result


def is_temporary(path: Path) -> bool:
    """A temporary file of atomic_path (left behind by a killed write)."""
    return path.name.startswith(".") and TEMP_MARK in path.name


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (no-op where directories can't be
    opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to `path`; write it completely, and on a clean exit it
    is fsynced and renamed to `path`. On an exception the temporary file is removed."""
    path = Path(path)
    temp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Indented JSON, written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file through atomic_path (tensors made contiguous)."""
    from safetensors.torch import save_file

    with atomic_path(path) as temp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata)


def save_numpy_safetensors(path: str | Path, arrays: dict[str, Any]) -> None:
    """NumPy arrays [any dtype safetensors keeps: int64 ids, float64 times] into one
    safetensors file, written atomically."""
    import numpy as np
    from safetensors.numpy import save

    atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_safe(obj: Any) -> Any:
    """JSON has no NaN/inf: they become null; NumPy scalars and arrays become Python's."""
    if isinstance(obj, np.ndarray | np.generic):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def numbers_of(obj: Any) -> list[float]:
    """Every number of a nested JSON-like result (dict keys in sorted order, lists in
    order), booleans excluded: two results compare number by number."""
    if isinstance(obj, dict):
        return [x for key in sorted(obj) for x in numbers_of(obj[key])]
    if isinstance(obj, list):
        return [x for v in obj for x in numbers_of(v)]
    return [float(obj)] if isinstance(obj, int | float) and not isinstance(obj, bool) else []
