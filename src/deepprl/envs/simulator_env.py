"""The paper's simulator (§3.3, §6) as an interactive environment: `deepprl/Simulator-v0`.

The hidden world is deepprl.data.simulator's (the same seed gives the same world as the
offline `simulator` dataset, so a model trained on that log can act here): objectives
o1 = sigmoid(r_i + eta_ui), o_k = 1 - c_uik(h) o1, and each user's true utility is
sum_k w_uk(h) o_uik(h) with the hidden preference w_u(h).
"""

from __future__ import annotations

import numpy as np

from deepprl.data.simulator import SimulatorConfig, SimulatorWorld, make_world
from deepprl.envs.core import ResponseConfig
from deepprl.envs.gym_env import RecommenderEnv, random_history


class SimulatorTruth:
    """Truth of a SimulatorWorld: objectives and utility depend on (user, item, hour)."""

    def __init__(self, world: SimulatorWorld) -> None:
        self.world = world
        self.n_users = world.config.n_users
        self.n_items = world.config.n_items
        self.n_objectives = world.config.n_objectives

    def values(self, users: np.ndarray, items: np.ndarray, times: np.ndarray,
               prev_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hours = (np.asarray(times) / 3600.0) % 24.0
        objectives = self.world.objectives(users, items, hours)  # [N, C, K]
        w = self.world.preference(users, hours)  # [N, K]
        return objectives, np.einsum("nck,nk->nc", objectives, w)


class SimulatorEnv(RecommenderEnv):
    """Users x items of the paper's simulator; defaults: 100 x 100, 2 objectives, 10
    initial interactions, top-10 per step, 50 steps per episode."""

    def __init__(self, *, n_users: int = 100, n_items: int = 100, n_objectives: int = 2,
                 world_seed: int = 0, initial_length: int = 10, horizon: int = 50,
                 history_length: int = 10, k: int = 10, temperature: float = 0.1,
                 outside: float = 0.8, mean_gap_hours: float = 24.0) -> None:
        config = SimulatorConfig(n_users=n_users, n_items=n_items, n_objectives=n_objectives,
                                 events_per_user=n_items, seed=world_seed)
        world = make_world(config)
        super().__init__(
            truth=SimulatorTruth(world), user_features=world.x,
            initial_history=random_history(n_items, initial_length, config.days),
            response=ResponseConfig(k=k, temperature=temperature, outside=outside,
                                    mean_gap_hours=mean_gap_hours),
            horizon=horizon, history_length=history_length, initial_length=initial_length,
            objective_names=tuple(f"o{j + 1}" for j in range(n_objectives)))
        self.world = world
