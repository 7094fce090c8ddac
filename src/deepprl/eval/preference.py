"""Do the learned weights track the true preference? Only a simulated world knows it.

The simulator (deepprl.data.simulator) draws each event's reward as sum_k w_k o_k with a
hidden preference w that depends on the user and on the hour. On the test events of a run
this compares the weights the run ranks with (alpha) to w: their correlation over events,
and within users across hours for the users whose w moves by at least `min_move` over
the day (does the policy use the context?).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deepprl.config import RunConfig
from deepprl.data.simulator import SimulatorValuer
from deepprl.data.splits import Split
from deepprl.eval.evaluator import build_eval_set
from deepprl.eval.headroom import grid_rewards
from deepprl.eval.metrics import top_k_reward
from deepprl.policy.weights import simplex_grid
from deepprl.recommender import Recommender

HOURS = np.linspace(0.0, 24.0, 49)[:-1]  # every half hour of a day


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of a [N, K] and b [N, K], averaged over the K coordinates; 0
    where a does not vary (a constant alpha tracks nothing), NaN where b does not."""
    out = []
    for k in range(a.shape[1]):
        if np.ptp(b[:, k]) == 0:
            out.append(float("nan"))
        elif np.ptp(a[:, k]) == 0:
            out.append(0.0)
        else:
            out.append(float(np.corrcoef(a[:, k], b[:, k])[0, 1]))
    return float(np.mean(out))


def preference_recovery(recommender: Recommender, config: RunConfig, split: Split, *,
                        min_move: float = 0.1) -> dict[str, Any]:
    """Learned alpha vs the true preference w on the run's test events (the evaluation's
    events: eval.max_events, seeded). ValueError unless the log is simulated."""
    data = recommender.data
    valuer = data.valuer
    if not isinstance(valuer, SimulatorValuer):
        raise ValueError(f"preference recovery needs the simulator's hidden preference; "
                         f"{data.name!r} has none")
    eval_set = build_eval_set(data, split, k=config.eval.k, max_events=config.eval.max_events,
                              seed=config.seed)
    events = eval_set.events
    alpha = recommender.learned_weights(events, eval_set.items)  # [E, K]
    truth = valuer.oracle_weights(data, events)  # [E, K]
    users = data.user[events]
    within, moving = [], 0
    for user in np.unique(users):
        day = valuer.world.preference(np.full(len(HOURS), user), HOURS)  # [H, K]
        if np.ptp(day, axis=0).max() < min_move:
            continue
        moving += 1
        mine = users == user
        if mine.sum() >= 3:
            within.append(_correlation(alpha[mine], truth[mine]))
    values = np.array([v for v in within if np.isfinite(v)])
    return {
        "events": len(events), "correlation": _correlation(alpha, truth),
        "moving_users": moving, "within_user_correlation_median":
            float(np.median(values)) if len(values) else float("nan"),
        "within_user_correlation_mean": float(values.mean()) if len(values) else float("nan"),
        "within_users": len(values), "min_move": min_move,
        "alpha_std": float(alpha.std(0).mean()), "truth_std": float(truth.std(0).mean()),
    }


@dataclass(frozen=True)
class GridOnTest:
    """A run's test events as the grid figures see them: the evaluation set's events [E]
    and candidates [E, C], its predictions y_hat [E, C, K], true reward [E, C] (0 where
    unknown), valid [E, C], the run's simplex grid [G, K] and every grid alpha's reward
    [E, G]."""

    events: np.ndarray
    items: np.ndarray
    y_hat: torch.Tensor
    reward: torch.Tensor
    valid: torch.Tensor
    grid: torch.Tensor
    rewards: torch.Tensor


def grid_on_test(recommender: Recommender, config: RunConfig, split: Split) -> GridOnTest:
    """The evaluation set of the run, scored once, with every grid alpha's reward."""
    es = build_eval_set(recommender.data, split, k=config.eval.k,
                        max_events=config.eval.max_events, seed=config.seed)
    y_hat = torch.from_numpy(recommender.scored(es.events, es.items).y_hat)
    reward = torch.from_numpy(np.nan_to_num(es.reward))
    valid = torch.from_numpy(es.valid)
    grid = simplex_grid(recommender.data.n_objectives, config.policy.grid_steps)
    return GridOnTest(events=es.events, items=es.items, y_hat=y_hat, reward=reward,
                      valid=valid, grid=grid,
                      rewards=grid_rewards(y_hat, reward, valid, grid, config.eval.k))


def grid_headroom(recommender: Recommender, config: RunConfig, split: Split,
                  test: GridOnTest | None = None) -> dict[str, float]:
    """What weights can earn with this run's predictor on its test events (any log): the
    best static grid alpha and the best grid alpha per event, both in hindsight (the
    second is optimistic: it picks each event's luckiest alpha), and the run's own alpha.
    The oracle's remaining gap beyond the per-event figure is the predictor's. `test`:
    the run's grid_on_test, where the caller has it already."""
    rewards = (test or grid_on_test(recommender, config, split)).rewards  # [E, G]
    return {"grid_static_hindsight": float(rewards.mean(0).max()),
            "grid_per_event_hindsight": float(rewards.max(1).values.mean())}


def nearest_grid_point(alpha: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """[E] index of the point of grid [G, K] nearest to each alpha [E, K]."""
    return torch.cdist(alpha.float(), grid).argmin(1)


def preference_ceiling(recommender: Recommender, config: RunConfig, split: Split,
                       test: GridOnTest | None = None) -> dict[str, float]:
    """What an alpha policy can earn with this run's predictor and no hindsight: the test
    reward of ranking the PREDICTED objectives with the TRUE preference w (the upper
    bound ranks the true objectives with w, so the rest of its gap is the predictor's),
    and with w snapped to the nearest grid point (the grid bandit's reach). Simulated logs
    only (ValueError otherwise). `test`: as for grid_headroom."""
    data = recommender.data
    valuer = data.valuer
    if not isinstance(valuer, SimulatorValuer):
        raise ValueError(f"the preference ceiling needs the simulator's hidden preference; "
                         f"{data.name!r} has none")
    t = test or grid_on_test(recommender, config, split)
    truth = torch.from_numpy(valuer.oracle_weights(data, t.events)).float()  # [E, K]
    nearest = nearest_grid_point(truth, t.grid)  # [E]
    on_predicted = top_k_reward(t.y_hat, t.reward, t.valid, truth, config.eval.k)
    return {"true_w_on_predicted": float(on_predicted.mean()),
            "snapped_true_w_on_predicted": float(t.rewards.gather(1, nearest[:, None]).mean())}
