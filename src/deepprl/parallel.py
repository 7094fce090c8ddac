"""Run independent tasks (seeds, frontier points, sensitivity grids) on an executor.

Every sweep in the project goes through `map_tasks`, so one switch moves it from this
process to a Ray cluster. Tasks are plain picklable callables with picklable arguments;
results come back in the order of `tasks`, whatever order they finished in.

Executors:
- "sequential": a list comprehension in this process (the reference).
- "processes": a pool of fresh (spawned) processes on this machine, one per core, each with
  an equal share of the cores as torch threads (two 1-thread lanes on 2 cores): small
  matrix products use one thread far better than two, so two lanes nearly halve the wall
  time of independent trainings. Results equal a sequential run at the same thread count.
- "ray": one Ray task per entry of `tasks`. Without `address`, an embedded local Ray is
  started with one worker slot per core (`ray.init(num_cpus=os.cpu_count())`) and shut down
  when the tasks are done; with `address` ("auto", "ray://host:10001", "host:6379"), the
  tasks go to that existing cluster and this process only disconnects afterwards. A Ray
  already initialised by the caller is used as it is and left running.
Ray is the optional extra `deepprl[ray]`, imported only when asked for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

EXECUTORS = ("sequential", "processes", "ray")


def map_tasks(fn: Callable[..., T], tasks: Sequence[dict[str, Any]], *,
              executor: str = "sequential", address: str | None = None) -> list[T]:
    """[fn(**task) for task in tasks] on `executor`; `address` names an existing cluster."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    if address is not None and executor != "ray":
        raise ValueError("--address needs a distributed executor (e.g. --executor ray)")
    if executor == "ray":
        return _map_ray(fn, tasks, address)
    if executor == "processes":
        return _map_processes(fn, tasks)
    return [fn(**task) for task in tasks]


def _call(fn: Callable[..., T], task: dict[str, Any]) -> T:
    return fn(**task)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _map_processes(fn: Callable[..., T], tasks: Sequence[dict[str, Any]]) -> list[T]:
    if not tasks:
        return []
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    cores = os.cpu_count() or 1
    workers = min(len(tasks), cores)
    # spawn, not fork: a forked child would inherit this process's torch thread pool
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_set_threads,
                             initargs=(max(1, cores // workers),)) as pool:
        return list(pool.map(_call, [fn] * len(tasks), [dict(t) for t in tasks]))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError("executor 'ray' needs Ray, an optional extra: "
                          "pip install 'deepprl[ray]'") from error
    return ray


def _start_ray(ray: Any, address: str | None) -> bool:
    """Connect (address) or start an embedded Ray unless one is up; True if we did."""
    if ray.is_initialized():
        return False
    if address is None:
        # workers of the embedded Ray import what this process imports (the test modules
        # and scripts that define sweep functions included)
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        ray.init(address=address, log_to_driver=False)
    return True


@contextmanager
def session(executor: str = "sequential", address: str | None = None) -> Iterator[None]:
    """Keep the executor up across several map_tasks calls (e.g. the rounds of a search):
    Ray is started or connected once here and shut down at the end, not once per call."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    if executor != "ray":
        yield
        return
    ray = _import_ray()
    started = _start_ray(ray, address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _map_ray(fn: Callable[..., T], tasks: Sequence[dict[str, Any]], address: str | None
             ) -> list[T]:
    if not tasks:
        return []
    ray = _import_ray()
    started = _start_ray(ray, address)
    try:
        remote = ray.remote(num_cpus=1)(_call)
        fn_ref = ray.put(fn)  # shipped once, not once per task
        return list(ray.get([remote.remote(fn_ref, dict(task)) for task in tasks]))
    finally:
        if started:
            ray.shutdown()
