"""Which code produced a result: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


@functools.cache
def code_version() -> str:
    """deepprl's version and, inside a git checkout, the commit ("+dirty" when the package's
    sources differ from it). Read once per process, on first use: a long experiment labels
    everything it trains with the code it started with, even if the checkout moves on."""
    from deepprl import __version__

    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True, cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."],
                               capture_output=True, timeout=5, cwd=here).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return f"deepprl {__version__}"
    return f"deepprl {__version__}, commit {commit}{'+dirty' if dirty else ''}"
