"""Which code produced a result: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str:
    """deepprl's version and, inside a git checkout, the commit."""
    from deepprl import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"deepprl {__version__}"
    return f"deepprl {__version__}, commit {commit}"
