"""Shared test settings, the one place a test asks for ../shared/data, and the gradient check.

A test that needs the real files under ../shared/data is marked
`@pytest.mark.needs_data("dataset/file")` (or calls `require_data`): it is skipped where the
file is absent, and fails instead when DEEPPRL_REQUIRE_DATA=1 (set by .ci/run: CI always has
../shared beside the checkout, so a missing file there is a broken set-up, not a skip).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REQUIRE_DATA_ENV = "DEEPPRL_REQUIRE_DATA"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_data(path): needs ../shared/data/<path>; skipped where absent, "
        f"a failure under {REQUIRE_DATA_ENV}=1")


def require_data(relative: str, *, root: Path = SHARED_DATA) -> Path:
    """root / relative when it exists; otherwise skip the test, or fail it when the
    environment variable DEEPPRL_REQUIRE_DATA is set to anything but '' or '0'."""
    path = root / relative
    if path.exists():
        return path
    message = f"../shared/data/{relative} is absent ({path})"
    if os.environ.get(REQUIRE_DATA_ENV, "") not in ("", "0"):
        pytest.fail(f"{message}, and {REQUIRE_DATA_ENV}={os.environ[REQUIRE_DATA_ENV]} "
                    "requires it", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a marked test loads the data: skip or fail (require_data)."""
    for mark in item.iter_markers("needs_data"):
        require_data(*mark.args)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread avoids oversubscription on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def double(batch: Any) -> Any:
    """A dataclass of tensors (a Batch) with its floating-point tensors in float64."""
    return dataclasses.replace(batch, **{
        f.name: getattr(batch, f.name).double() for f in dataclasses.fields(batch)
        if getattr(batch, f.name).is_floating_point()})


def assert_gradients(named: Iterable[tuple[str, torch.Tensor | None]], *,
                     zero: Collection[str] = ()) -> None:
    """Every gradient is present and finite; those named in `zero` (parameters the loss is
    invariant to, e.g. a bias cancelled by a mean subtraction) are zero up to rounding, and
    every other one is clearly away from zero. Both relative to the largest gradient entry
    of all (scale): max |g| <= 1e-10 scale for `zero`, > 1e-8 scale for the others.

    The gradients must be float64. In float32 a gradient that is zero in exact arithmetic
    comes out as rounding noise up to ~1e-7 of the scale (measured: 3e-8 to 1.2e-7), the
    size of small genuine gradients (the MoH attention's query and key weights: 1.4e-6), so
    no threshold separates them and an exact `> 0` holds only through rounding. In float64
    the noise is ~1e-16 and the smallest genuine gradient of the suite 3.5e-6 of the scale."""
    grads = dict(named)
    assert grads, "no parameters"
    for name, grad in grads.items():
        assert grad is not None, f"{name}: no gradient"
        assert grad.dtype == torch.float64, f"{name}: {grad.dtype} gradient, run in float64"
        assert torch.isfinite(grad).all(), f"{name}: a non-finite gradient"
    sizes = {n: float(g.abs().max()) for n, g in grads.items() if g is not None}
    scale = max(sizes.values())
    assert scale > 0, "every gradient is zero"
    assert set(zero) <= set(sizes), f"not parameters: {sorted(set(zero) - set(sizes))}"
    for name, size in sizes.items():
        if name in zero:
            assert size <= 1e-10 * scale, f"{name}: max |g| {size:.3g}, scale {scale:.3g}"
        else:
            assert size > 1e-8 * scale, \
                f"{name}: max |g| {size:.3g} is rounding-sized (scale {scale:.3g})"


WALL_CLOCK = ("seconds", "records_per_s")
"""The fields of metrics and reports that two runs of the same work may differ in."""


def without(obj: Any, keys: tuple[str, ...] = WALL_CLOCK) -> Any:
    """`obj` (nested dicts and lists) with the dict entries named in `keys` dropped at every
    depth: what two runs of the same seed must agree on exactly."""
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj


def train_served_run(out: Path) -> Path:
    """A tiny trained simulator run whose continuous actor is kept as learned (alpha moves
    with the state): what the serving and export tests serve. Returns `out`."""
    from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
    from deepprl.train.run import train_run

    train_run(RunConfig(dataset={"name": "simulator", "n_users": 30, "n_items": 40,
                                 "events_per_user": 20},
                        train=TrainConfig(epochs=1),
                        policy=PolicyConfig(steps=50, algorithm="ddpg", fallback="none"),
                        eval=EvalConfig(k=5)), out)
    return out
