"""Full-information contextual bandit over a grid on the weight simplex (learning only).

On a logged trajectory the next state does not depend on alpha, and the reward of every
alpha is computable from the event's logged candidates: per event the reward r_g of each
grid point g is known (deepprl.eval.headroom.grid_rewards), so there is nothing to explore.
The estimator regresses each grid point's reward *centred per event*, r_g - mean_g' r_g',
with squared error, and the policy acts by the argmax (deepprl.policy.weights.GridBandit).
Centring removes the event's level (how good its candidates are at all), which the argmax
ignores but which dominates the variance of the raw rewards; the regression is a proper
scoring rule for the mean, so the argmax of the fit is the Bayes decision. Overfitting is
kept in check by weight decay and by early stopping on a seeded slice of the learning
users: the state with the best greedy reward there is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepprl.distributed import SINGLE, World, all_sum, average_gradients, broadcast_module
from deepprl.policy.weights import GridBandit

CHECK_EVERY = 100  # gradient steps between two early-stopping checks


@dataclass(frozen=True)
class BanditData:
    """What the bandit learns from: E events (this rank's under torchrun)."""

    state: torch.Tensor  # [E, S]
    context: torch.Tensor  # [E, Fc]
    rewards: torch.Tensor  # [E, G] reward of every grid alpha at each event
    stop: torch.Tensor  # [E] bool: events of the early-stopping users (not fitted)


def centred(rewards: torch.Tensor) -> torch.Tensor:
    """[E, G] -> each event's grid rewards minus their mean over the grid."""
    return rewards - rewards.mean(1, keepdim=True)


def standardisation(x: torch.Tensor, world: World = SINGLE
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) [D] of the rows of x [E, D], pooled over ranks."""
    sums = all_sum([float(len(x)), *x.double().sum(0).tolist(),
                    *x.double().pow(2).sum(0).tolist()], world)
    count, d = max(sums[0], 1.0), x.shape[1]
    mean = torch.tensor(sums[1 : 1 + d], dtype=torch.float64) / count
    var = torch.tensor(sums[1 + d :], dtype=torch.float64) / count - mean.pow(2)
    return mean.float(), var.clamp(min=0).sqrt().float()


def greedy_reward(policy: GridBandit, data: BanditData, rows: torch.Tensor,
                  world: World = SINGLE) -> float:
    """Mean reward of the policy's greedy grid point over `rows`, pooled over ranks (NaN
    where no rank has any)."""
    with torch.no_grad():
        pick = policy.scores(data.state[rows], data.context[rows]).argmax(-1)  # [R]
        total = float(data.rewards[rows].gather(1, pick[:, None]).sum())
    total, count = all_sum([total, float(len(rows))], world)
    return total / count if count else float("nan")


def learn_grid_bandit(policy: GridBandit, data: BanditData, *, steps: int, batch_size: int,
                      lr: float, weight_decay: float, patience: int, seed: int,
                      world: World = SINGLE,
                      progress: Callable[[int, dict[str, float]], None] | None = None
                      ) -> list[dict[str, float]]:
    """Fit policy.scores to the centred grid rewards (MSE, AdamW); returns a log every
    CHECK_EVERY steps. With early-stopping events, stops after `patience` checks without a
    better greedy reward there and restores the best state. Under torchrun each rank holds
    its users' events; gradients and the checks are averaged over ranks."""
    fit = torch.nonzero(~data.stop).squeeze(1)
    held = torch.nonzero(data.stop).squeeze(1)
    inputs = policy.inputs(data.state[fit], data.context[fit])
    policy.set_standardisation(*standardisation(inputs, world))
    broadcast_module(policy, world)
    target = centred(data.rewards)  # [E, G]
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed if not world.distributed
                                        else seed * 1009 + world.rank)
    per_step = -(-batch_size // world.size)
    stopping = all_sum([float(len(held))], world)[0] > 0
    best, best_state, since, log = -float("inf"), copy.deepcopy(policy.state_dict()), 0, []
    if progress is not None:
        progress(0, {})
    policy.train()
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss, count = torch.zeros(()), 0  # a rank without events still joins the average
        if len(fit):
            j = fit[torch.randint(len(fit), (min(per_step, len(fit)),), generator=gen)]
            loss = (policy.scores(data.state[j], data.context[j]) - target[j]).pow(2).mean()
            count = len(j)
            loss.backward()
        average_gradients(policy.parameters(), count, world)
        opt.step()
        if step % CHECK_EVERY and step != steps:
            continue
        loss_sum, counted = all_sum([float(loss.detach()) * count, float(count)], world)
        record = {"step": step, "loss": loss_sum / max(counted, 1.0),
                  "fit_reward": greedy_reward(policy, data, fit, world)}
        if stopping:
            record["stop_reward"] = greedy_reward(policy, data, held, world)
            if record["stop_reward"] > best:
                best, best_state, since = record["stop_reward"], copy.deepcopy(
                    policy.state_dict()), 0
            else:
                since += 1
        log.append(record)
        if progress is not None:
            progress(step, record)
        if stopping and since >= patience:
            break
    if stopping:
        policy.load_state_dict(best_state)
    policy.eval()
    return log
