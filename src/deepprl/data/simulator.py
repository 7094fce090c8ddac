"""The paper's discrete-choice simulator (§3.3, §6), with a hidden, learnable preference.

Generative model (all draws from one seeded numpy Generator):
- users u have observable features x_u ~ N(0, I_d) (d = user_dim);
- items have r_i ~ N(0.5, 1) (std 1) and observable features: r_i seen through noise
  N(0, 0.5^2) plus two N(0, 1) distractors;
- eta_ui ~ N(0, 0.1), where 0.1 is the VARIANCE (std = sqrt(0.1) ~ 0.316), fixed per pair;
- each event happens at an hour h (uniform over the day); context is
  phi(h) = (sin 2 pi h/24, cos 2 pi h/24), observable through the log's clock;
- the personal, contextual trade-off of objective k >= 2:
  c_uik(h) = sigmoid(1.7 * z) with z = (a_k . x_u + b_k . phi(h) + xi_ik) / sqrt(norm),
  a standardised logit so that c is close to uniform on (0, 1) as the paper states;
- objectives: o_ui1 = sigmoid(r_i + eta_ui), o_uik = 1 - c_uik(h) * o_ui1 (k >= 2);
- hidden true preference w_u(h) = softmax(strength * (P x_u + Q phi(h))), on the simplex;
- reward of an item = sum_k w_uk(h) * o_uik(h): the user's own trade-off.
The log: every user meets `events_per_user` distinct items in random order (the default,
all items, is the paper's 100 x 100 = 10,000 records), at random times over 60 days.
Because everything is known, the simulator values any (user, item, time) and gives the
oracle: the true weights w_u(h), and the ranking by true reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepprl.data.clock import time_context
from deepprl.data.interactions import Interactions

ETA_VARIANCE = 0.1
C_LOGIT_SCALE = 1.7  # sigmoid(1.7 z), z ~ N(0, 1), is close to Uniform(0, 1)


@dataclass(frozen=True)
class SimulatorConfig:
    """Size and shape of a simulated log."""

    n_users: int = 100
    """Number of users."""
    n_items: int = 100
    """Number of items."""
    n_objectives: int = 2
    """Objectives K >= 2: o1 and K - 1 conflicting ones."""
    events_per_user: int = 100
    """Logged events per user (distinct items; at most n_items)."""
    user_dim: int = 4
    """Dimension of the observable user features."""
    preference_strength: float = 3.0
    """Sharpness of the hidden preference softmax: larger, more extreme users."""
    days: float = 60.0
    """Time span of the log, in days."""
    seed: int = 0
    """Seed of the generator."""

    def __post_init__(self) -> None:
        if self.n_objectives < 2:
            raise ValueError(f"n_objectives must be >= 2, got {self.n_objectives}")
        if self.n_users < 1 or self.n_items < 2:
            raise ValueError("the simulator needs at least 1 user and 2 items")
        if not 1 <= self.events_per_user <= self.n_items:
            raise ValueError(f"events_per_user must be in [1, n_items={self.n_items}], "
                             f"got {self.events_per_user}")
        if self.user_dim < 1 or self.seed < 0:
            raise ValueError(f"user_dim must be >= 1 and seed >= 0, got {self.user_dim} and "
                             f"{self.seed}")
        if not (0 <= self.preference_strength < float("inf") and 0 < self.days < float("inf")):
            raise ValueError(f"preference_strength must be a number >= 0 and days > 0, got "
                             f"{self.preference_strength} and {self.days}")


@dataclass(frozen=True, eq=False)
class SimulatorWorld:
    """The hidden parameters of one simulated world; index 0 rows are padding."""

    config: SimulatorConfig
    x: np.ndarray  # [U + 1, d] user features
    r: np.ndarray  # [I + 1] item relevance
    eta: np.ndarray  # [U + 1, I + 1] error term
    a: np.ndarray  # [K - 1, d] user loadings of c
    b: np.ndarray  # [K - 1, 2] context loadings of c
    xi: np.ndarray  # [K - 1, I + 1] item part of c
    P: np.ndarray  # [K, d] user loadings of the preference
    Q: np.ndarray  # [K, 2] context loadings of the preference

    def phi(self, hours: np.ndarray) -> np.ndarray:
        """[...] hours -> [..., 2] context on the unit circle."""
        angle = 2 * np.pi * hours / 24.0
        return np.stack([np.sin(angle), np.cos(angle)], axis=-1)

    def objectives(self, users: np.ndarray, items: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """users [E], items [E, C], hours [E] -> true objectives [E, C, K]."""
        o1 = _sigmoid(self.r[items] + self.eta[users[:, None], items])  # [E, C]
        norm = np.sqrt((self.a**2).sum(1) + (self.b**2).sum(1) + 1.0)  # [K - 1]
        z = (self.x[users] @ self.a.T)[:, None, :] + (self.phi(hours) @ self.b.T)[:, None, :]
        z = (z + self.xi[:, items].transpose(1, 2, 0)) / norm  # [E, C, K - 1]
        c = _sigmoid(C_LOGIT_SCALE * z)
        return np.concatenate([o1[..., None], 1.0 - c * o1[..., None]], axis=-1)

    def preference(self, users: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """users [E], hours [E] -> true weights w [E, K] on the simplex."""
        logits = self.config.preference_strength * (
            self.x[users] @ self.P.T + self.phi(hours) @ self.Q.T
        ) / np.sqrt(self.x.shape[1] + 2)
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        return w / w.sum(axis=1, keepdims=True)


def make_world(config: SimulatorConfig) -> SimulatorWorld:
    rng = np.random.default_rng(config.seed)
    U, I, K, d = config.n_users, config.n_items, config.n_objectives, config.user_dim
    x = np.zeros((U + 1, d))
    x[1:] = rng.normal(size=(U, d))
    r = np.zeros(I + 1)
    r[1:] = rng.normal(0.5, 1.0, size=I)
    eta = np.zeros((U + 1, I + 1))
    eta[1:, 1:] = rng.normal(0.0, np.sqrt(ETA_VARIANCE), size=(U, I))
    xi = np.zeros((K - 1, I + 1))
    xi[:, 1:] = rng.normal(size=(K - 1, I))
    return SimulatorWorld(
        config=config, x=x, r=r, eta=eta, a=rng.normal(size=(K - 1, d)),
        b=rng.normal(size=(K - 1, 2)), xi=xi, P=rng.normal(size=(K, d)),
        Q=rng.normal(size=(K, 2)) * 1.5,
    )


class SimulatorValuer:
    """Ground truth of any candidate at any event, from the hidden world."""

    fully_observed = True

    def __init__(self, world: SimulatorWorld) -> None:
        self.world = world

    def values(self, data: Interactions, events: np.ndarray, items: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        users, hours = data.user[events], _hours(data.time[events])
        objectives = self.world.objectives(users, items, hours).astype(np.float32)
        w = self.world.preference(users, hours)  # [E, K]
        reward = np.einsum("eck,ek->ec", objectives, w).astype(np.float32)
        objectives[items == 0] = np.nan
        reward[items == 0] = np.nan
        return objectives, reward

    def oracle_weights(self, data: Interactions, events: np.ndarray) -> np.ndarray:
        """The true preference at each event [E, K]: the best possible weights."""
        return self.world.preference(data.user[events], _hours(data.time[events]))


def load_simulator(config: SimulatorConfig | None = None) -> Interactions:
    """Generate a log from the simulator; `data.valuer` is its SimulatorValuer."""
    config = config or SimulatorConfig()
    world = make_world(config)
    rng = np.random.default_rng([config.seed, 1])
    U, E = config.n_users, config.events_per_user
    user = np.repeat(np.arange(1, U + 1), E)
    item = np.concatenate([rng.permutation(config.n_items)[:E] + 1 for _ in range(U)])
    time = np.sort(rng.uniform(0, config.days * 86400.0, size=(U, E)), axis=1).ravel()
    valuer = SimulatorValuer(world)
    objectives = world.objectives(user, item[:, None], _hours(time))[:, 0, :]
    w = world.preference(user, _hours(time))
    reward = (objectives * w).sum(1)
    context, context_names = time_context(user, time, has_clock=True)
    item_features = np.zeros((config.n_items + 1, 3))
    item_features[1:, 0] = world.r[1:] + rng.normal(0.0, 0.5, size=config.n_items)
    item_features[1:, 1:] = rng.normal(size=(config.n_items, 2))
    return Interactions(
        name="simulator", objective_names=tuple(f"o{k + 1}" for k in range(config.n_objectives)),
        user=user.astype(np.int64), item=item.astype(np.int64), time=time,
        objectives=objectives.astype(np.float32), reward=reward.astype(np.float32),
        context=context, user_features=world.x.astype(np.float32),
        item_features=item_features.astype(np.float32),
        user_ids=tuple(str(u) for u in range(1, U + 1)),
        item_ids=tuple(str(i) for i in range(1, config.n_items + 1)),
        context_names=context_names,
        user_feature_names=tuple(f"x{j}" for j in range(config.user_dim)),
        item_feature_names=("r_noisy", "noise_1", "noise_2"),
        valuer=valuer,
    )


def _hours(time: np.ndarray) -> np.ndarray:
    return (time / 3600.0) % 24.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
