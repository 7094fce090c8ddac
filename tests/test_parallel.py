"""map_tasks: the process pool and the Ray executor return what the sequential run returns,
in task order."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from deepprl.parallel import map_tasks


def _frontier_point(weight: float, seed: int) -> dict[str, float]:
    """A small seeded computation standing in for one point of a frontier sweep."""
    rng = np.random.default_rng(seed)
    y = rng.random((200, 2))
    scores = weight * y[:, 0] + (1 - weight) * y[:, 1]
    top = np.argsort(-scores)[:10]
    return {"weight": weight, "seed": seed, "o1": float(y[top, 0].mean()),
            "o2": float(y[top, 1].mean())}


def _fails(x: int) -> int:
    if x == 2:
        raise ValueError("task 2 failed")
    return x


def test_unknown_executor_and_address_rules() -> None:
    with pytest.raises(ValueError, match="unknown executor"):
        map_tasks(_fails, [], executor="dask")
    with pytest.raises(ValueError, match="address"):
        map_tasks(_fails, [], executor="sequential", address="auto")


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"deepprl\[ray\]"):
        map_tasks(_fails, [{"x": 1}], executor="ray")


def test_ray_sweep_equals_sequential() -> None:
    ray = pytest.importorskip("ray")
    tasks = [{"weight": w, "seed": s} for w in (0.0, 0.25, 0.5, 0.75, 1.0) for s in (0, 1)]
    sequential = map_tasks(_frontier_point, tasks)
    on_ray = map_tasks(_frontier_point, tasks, executor="ray")
    assert on_ray == sequential
    assert not ray.is_initialized()  # the embedded Ray it started is shut down


def test_ray_reraises_task_errors_and_keeps_a_callers_ray() -> None:
    ray = pytest.importorskip("ray")
    path = ":".join(p for p in sys.path if p)  # so that workers import this test module
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        assert map_tasks(_fails, [{"x": 0}, {"x": 1}], executor="ray") == [0, 1]
        assert ray.is_initialized()  # not ours to shut down
        with pytest.raises(ValueError, match="task 2 failed"):
            map_tasks(_fails, [{"x": 1}, {"x": 2}], executor="ray")
    finally:
        ray.shutdown()


def _bowl(alpha: np.ndarray) -> float:
    """Best at alpha = (0.8, 0.2)."""
    return -float(((alpha - np.array([0.8, 0.2])) ** 2).sum())


def test_batched_weight_search_on_ray_equals_batched_sequential() -> None:
    pytest.importorskip("ray")
    from deepprl.eval.static_weights import tune_weights

    reference, _ = tune_weights(_bowl, 2, trials=12, seed=0)
    sequential, log_seq = tune_weights(_bowl, 2, trials=12, seed=0, parallel=4)
    on_ray, log_ray = tune_weights(_bowl, 2, trials=12, seed=0, parallel=4, executor="ray")
    assert log_ray == log_seq and len(log_ray) == 12
    np.testing.assert_array_equal(on_ray, sequential)
    # both searches end near the optimum
    for alpha in (reference, on_ray):
        assert _bowl(alpha) > -0.02


def test_process_pool_equals_sequential_in_task_order() -> None:
    tasks = [{"weight": w, "seed": s} for w in (0.0, 0.5, 1.0) for s in (0, 1)]
    assert map_tasks(_frontier_point, tasks, executor="processes") == map_tasks(
        _frontier_point, tasks)
    assert map_tasks(_frontier_point, [], executor="processes") == []

