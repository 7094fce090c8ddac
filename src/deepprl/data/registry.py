"""Datasets by name, and rebuilding a run's data from the spec saved in its config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepprl.data.generic import load_log
from deepprl.data.interactions import Interactions
from deepprl.data.movielens import load_movielens_100k
from deepprl.data.schema import mapping_from_dict
from deepprl.data.simulator import SimulatorConfig, load_simulator


def _simulator_config(options: dict[str, Any]) -> SimulatorConfig:
    names = {f.name for f in dataclasses.fields(SimulatorConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"simulator: unknown option {unknown[0]!r}; expected {sorted(names)}")
    try:
        return SimulatorConfig(**options)
    except TypeError as err:
        raise ValueError(f"simulator: bad option value: {err}") from err


def _simulator(**options: Any) -> Interactions:
    return load_simulator(_simulator_config(options))


def _movielens(path: str | None = None) -> Interactions:
    return load_movielens_100k(path)


def _movielens_sim() -> Interactions:
    from deepprl.data.movielens_sim import load_movielens_sim  # fits its model on first use

    return load_movielens_sim()


DATASETS: dict[str, tuple[Callable[..., Interactions], str]] = {
    "simulator": (_simulator, "the paper's discrete-choice simulator (fully observed, oracle)"),
    "movielens-100k": (_movielens, "bundled MovieLens-100K: consistency, recency; rating/5"),
    "movielens-sim": (_movielens_sim, "MovieLens-100K made fully observed: calibrated "
                      "ratings for every user x movie (the MovieLensSim-v0 world)"),
}


def dataset_spec(name: str | None = None, *, data: str | None = None,
                 mapping: str | None = None, options: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The JSON-able recipe saved in a run, from CLI-style arguments."""
    if (name is None) == (data is None):
        raise ValueError("give either a dataset name (--dataset) or a file (--data with "
                         "--mapping)")
    if data is not None:
        if options:
            raise ValueError("dataset options apply to built-in datasets, not to --data")
        if mapping is None:
            raise ValueError("--data needs --mapping FILE (see README: 'Your own log')")
        from deepprl.data.schema import read_mapping

        return {"data": str(Path(data).resolve()), "mapping": read_mapping(mapping).to_dict()}
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    options = options or {}
    if name == "simulator":
        _simulator_config(options)  # fail now, not after training, on a bad option
    elif name == "movielens-sim" and options:
        raise ValueError(f"movielens-sim takes no options, got {sorted(options)}")
    elif set(options) - {"path"}:
        raise ValueError(f"{name}: unknown option {sorted(set(options) - {'path'})[0]!r}; "
                         f"expected 'path'")
    return {"name": name, **options}


def load_dataset(spec: dict[str, Any]) -> Interactions:
    """Rebuild the data a spec describes."""
    if "data" in spec:
        return load_log(spec["data"], mapping_from_dict(spec["mapping"], source="run mapping"))
    name = spec.get("name")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    options = {k: v for k, v in spec.items() if k != "name"}
    return DATASETS[name][0](**options)
