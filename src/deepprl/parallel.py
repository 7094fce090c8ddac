"""Run independent tasks (seeds, frontier points, sensitivity grids) on an executor.

Every sweep in the project goes through `map_tasks`, so one switch moves it from this
process to a Ray cluster. Tasks are plain picklable callables with picklable arguments;
results come back in the order of `tasks`, whatever order they finished in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

EXECUTORS = ("sequential",)


def map_tasks(fn: Callable[..., T], tasks: Sequence[dict[str, Any]], *,
              executor: str = "sequential", address: str | None = None) -> list[T]:
    """[fn(**task) for task in tasks] on `executor`; `address` names an existing cluster."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    if address is not None and executor == "sequential":
        raise ValueError("--address needs a distributed executor (e.g. --executor ray)")
    return [fn(**task) for task in tasks]
