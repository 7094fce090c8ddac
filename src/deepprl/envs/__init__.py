"""Gymnasium environments (vector reward): `deepprl/Simulator-v0`, `deepprl/MovieLensSim-v0`.

`import deepprl` registers both ids (entry points only: nothing is built until
gymnasium.make), at once if gymnasium is imported already, else as soon as it is: importing
gymnasium costs a tenth of a second that `deepprl recommend` need not pay.
See docs/environments.md.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

ENVIRONMENTS: dict[str, str] = {
    "deepprl/Simulator-v0": "deepprl.envs.simulator_env:SimulatorEnv",
    "deepprl/MovieLensSim-v0": "deepprl.envs.movielens_sim:MovieLensSimEnv",
}


def register_environments() -> None:
    """Register every id with gymnasium once (a no-op when gymnasium is not installed)."""
    try:
        import gymnasium
    except ImportError:  # pragma: no cover - gymnasium is a dependency, kept optional here
        return
    for env_id, entry_point in ENVIRONMENTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


def register_when_imported() -> None:
    """register_environments now if gymnasium is imported, else right after its import."""
    if "gymnasium" in sys.modules:
        register_environments()
    elif not any(isinstance(f, _AfterGymnasium) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterGymnasium())


class _AfterGymnasium:
    """A meta path finder that finds nothing itself: it wraps gymnasium's own loader to
    register our ids once gymnasium has finished importing, then leaves sys.meta_path.
    (Duck-typed: importlib.abc would import importlib.resources, dearer than the hook.)"""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> ModuleSpec | None:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the finders after this one
        if spec is not None and spec.loader is not None:
            spec.loader = cast("Loader", _RegisterAfter(spec.loader))
        return spec


class _RegisterAfter:
    """gymnasium's loader, calling register_environments after executing the module."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, get_source, ...
        return getattr(self.loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        register_environments()
