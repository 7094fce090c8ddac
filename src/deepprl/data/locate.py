"""Where a dataset read from disk (not bundled with the package) is found.

Order, first match wins:
1. the dataset option `path` (then nothing else is tried);
2. `$DEEPPRL_DATA_DIR/<folder>`;
3. `../shared/data/<folder>` relative to the current directory;
4. `../shared/data/<folder>` relative to the repository root (the nearest folder above this
   module holding pyproject.toml), for a checkout run from elsewhere.
A folder counts only when it holds every file the dataset needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deepprl.data.schema import DataError

ENV_VAR = "DEEPPRL_DATA_DIR"
SHARED = Path("..") / "shared" / "data"


def candidate_dirs(folder: str) -> list[Path]:
    """The default places searched for `folder`, in order (without the `path` option)."""
    places: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        places.append(Path(env) / folder)
    places.append(Path.cwd() / SHARED / folder)
    root = next((p for p in Path(__file__).resolve().parents
                 if (p / "pyproject.toml").is_file()), None)
    if root is not None:
        places.append(root / SHARED / folder)
    return places


def find_data_dir(folder: str, files: Sequence[str], path: str | Path | None = None) -> Path:
    """The folder holding `files` for dataset folder `folder`; DataError naming every place
    tried (and the missing files) when there is none."""
    if path is not None:
        root = Path(path).expanduser()
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            raise DataError(f"{root}: missing {', '.join(missing)} (dataset option path)")
        return root
    places = candidate_dirs(folder)
    for place in places:
        if all((place / f).is_file() for f in files):
            return place
    tried = "; ".join(str(p) for p in places)
    raise DataError(f"{folder}: no folder holding {', '.join(files)} was found; tried {tried}. "
                    f"Pass the dataset option path=DIR or set {ENV_VAR}")
