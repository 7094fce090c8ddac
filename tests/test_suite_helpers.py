"""The suite's own helpers (tests/conftest.py): the ../shared/data requirement, both modes,
and the gradient check."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REQUIRE_DATA_ENV, assert_gradients, pytest_runtest_setup, require_data


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    (tmp_path / "there").mkdir()
    (tmp_path / "there" / "file.csv").write_text("a\n1\n")
    return tmp_path


@pytest.mark.parametrize("value", [None, "", "0"])
def test_missing_data_skips_by_default(shared: Path, value: str | None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_DATA_ENV, value)
    assert require_data("there/file.csv", root=shared) == shared / "there" / "file.csv"
    with pytest.raises(pytest.skip.Exception, match=r"absent-set/ratings\.csv is absent"):
        require_data("absent-set/ratings.csv", root=shared)


def test_missing_data_fails_when_required(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    assert require_data("there", root=shared) == shared / "there"  # present: no failure
    with pytest.raises(pytest.fail.Exception,
                       match=f"absent-set is absent .*{REQUIRE_DATA_ENV}=1 requires it"):
        require_data("absent-set", root=shared)


def test_the_marker_goes_through_require_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """@pytest.mark.needs_data(path) is checked before the test's fixtures load anything."""
    item = SimpleNamespace(iter_markers=lambda name: [pytest.mark.needs_data(
        "no-such-dataset/x.csv").mark] if name == "needs_data" else [])
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-dataset/x\.csv is absent"):
        pytest_runtest_setup(item)  # type: ignore[arg-type]
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"no-such-dataset/x\.csv is absent"):
        pytest_runtest_setup(item)  # type: ignore[arg-type]


def test_gradient_check_states_which_parameters_are_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.full((1,), 0.3, dtype=torch.float64, requires_grad=True)  # shared by 4 outputs
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    a = x @ w + b  # [5, 4]
    (a - a.mean(-1, keepdim=True)).pow(3).sum().backward()  # b cancels in the centring
    assert w.grad is not None and b.grad is not None
    named = [("w", w.grad), ("b", b.grad)]
    assert_gradients(named, zero=("b",))
    with pytest.raises(AssertionError, match="b: max"):
        assert_gradients(named)  # b's gradient is rounding, not a signal
    with pytest.raises(AssertionError, match="w: max"):
        assert_gradients(named, zero=("w", "b"))
    with pytest.raises(AssertionError, match="c: no gradient"):
        assert_gradients([*named, ("c", None)], zero=("b",))
    with pytest.raises(AssertionError, match=r"w: torch\.float32 gradient, run in float64"):
        assert_gradients([("w", w.grad.float())])
