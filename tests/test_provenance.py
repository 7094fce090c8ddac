"""Which code produced a result: read once per process, dirty sources are flagged."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from deepprl.provenance import code_version


def test_code_version_is_read_once_and_names_the_commit() -> None:
    version = code_version()
    assert version.startswith("deepprl ")
    assert code_version() is version  # cached: a long run keeps the label it started with
    inside_git = shutil.which("git") and (Path(__file__).parents[1] / ".git").exists()
    if not inside_git:
        pytest.skip("not a git checkout")
    assert re.fullmatch(r"deepprl \S+, commit [0-9a-f]{4,40}(\+dirty)?", version), version
