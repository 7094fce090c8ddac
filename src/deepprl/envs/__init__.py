"""Gymnasium environments (vector reward): `deepprl/Simulator-v0`, `deepprl/MovieLensSim-v0`.

`import deepprl` registers both ids (entry points only: nothing is built until
gymnasium.make). See docs/environments.md.
"""

from __future__ import annotations

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
