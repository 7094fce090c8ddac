"""Resumable training state: modules, optimisers, generators and the global RNGs.

A checkpoint is one safetensors file (written atomically): the tensors, and in its metadata
a JSON skeleton of everything else (optimiser hyper-parameters, numpy/python RNG states, the
position in training). Loading never unpickles. Restoring the global RNGs (python `random`,
numpy's legacy global, torch's default generator) with the objects' own state makes a
resumed run draw exactly the numbers an uninterrupted one draws.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from deepprl.io import save_safetensors

Generator = torch.Generator | np.random.Generator
_META = "deepprl_checkpoint"


@dataclass(frozen=True)
class Snapshot:
    """The live objects a training loop resumes (by name; restored in place)."""

    modules: dict[str, nn.Module] = field(default_factory=dict)  # weights and buffers
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    generators: dict[str, Generator] = field(default_factory=dict)


class Checkpoints:
    """The checkpoints of one run: FOLDER/<name>.safetensors, the latest of each name."""

    def __init__(self, *, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.safetensors"

    def save(self, name: str, snapshot: Snapshot, position: dict[str, Any]) -> None:
        """The state of `snapshot`, the global RNGs and `position` (JSON-able: e.g. the
        epoch and the log so far), replacing the previous checkpoint `name`."""
        state = {"modules": {n: m.state_dict() for n, m in snapshot.modules.items()},
                 "optimizers": {n: o.state_dict() for n, o in snapshot.optimizers.items()},
                 "generators": {n: _generator_state(g)
                                for n, g in snapshot.generators.items()},
                 "globals": _global_rng_state(), "position": position}
        tensors: dict[str, torch.Tensor] = {}
        skeleton = _encode(state, tensors)
        save_safetensors(self.path(name), tensors, metadata={_META: json.dumps(skeleton)})

    def position(self, name: str) -> dict[str, Any] | None:
        """The position saved with checkpoint `name` (None without one), nothing restored."""
        path = self.path(name)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as handle:
            skeleton = json.loads((handle.metadata() or {})[_META])
        parts = {k: v for k, v in skeleton["dict"]}
        position: dict[str, Any] = _decode(parts["position"], {})
        return position

    def restore(self, name: str, snapshot: Snapshot) -> dict[str, Any] | None:
        """Load checkpoint `name` into `snapshot` and the global RNGs; returns its position,
        or None when there is none. Call it after building every object: building draws
        from the global RNGs, which this then sets to where the checkpoint was taken."""
        path = self.path(name)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            # fresh allocations, as in an uninterrupted run (not views into the file)
            tensors = {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118
        if _META not in metadata:
            raise ValueError(f"{path}: not a deepprl checkpoint")
        state = _decode(json.loads(metadata[_META]), tensors)
        for kind, objects in (("modules", snapshot.modules),
                              ("optimizers", snapshot.optimizers),
                              ("generators", snapshot.generators)):
            if set(state[kind]) != set(objects):
                raise ValueError(f"{path}: holds {kind} {sorted(state[kind])}, training "
                                 f"has {sorted(objects)}; resume with --overwrite instead")
        for n, module in snapshot.modules.items():
            module.load_state_dict(state["modules"][n])
        for n, optimizer in snapshot.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][n])
        for n, generator in snapshot.generators.items():
            _set_generator_state(generator, state["generators"][n])
        _set_global_rng_state(state["globals"])
        position: dict[str, Any] = state["position"]
        return position


def _generator_state(generator: Generator) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    return generator.bit_generator.state


def _set_generator_state(generator: Generator, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    else:
        generator.bit_generator.state = state


def _global_rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def _set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of a nested state; tensors go to `tensors`, referenced by key. Dicts
    become key/value pairs and tuples are marked, so both come back with their types (an
    optimiser's state is keyed by int, RNG states are tuples)."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().clone().contiguous()  # no shared storage in the file
        return {"tensor": key}
    if isinstance(obj, np.ndarray):
        return {"ndarray": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
    if isinstance(obj, dict):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj  # floats round-trip exactly through json's repr
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "tensor" in obj:
        return tensors[obj["tensor"]]
    if "ndarray" in obj:
        return np.array(obj["data"], dtype=np.dtype(obj["ndarray"])).reshape(obj["shape"])
    if "tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["tuple"])
    return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["dict"]}
