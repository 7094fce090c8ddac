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
users chooses the number of steps, after which the policy is refitted on every learning
user for that many steps.
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


Check = Callable[[int, float], bool]
"""(step, mean loss of the step's batch) -> stop now; called every CHECK_EVERY steps."""


def _fit(policy: GridBandit, data: BanditData, rows: torch.Tensor, *, steps: int,
         batch_size: int, lr: float, weight_decay: float, seed: int, world: World,
         check: Check) -> None:
    """AdamW on the squared error of policy.scores against the centred grid rewards of
    `rows` (standardised on them), from the policy's current weights."""
    policy.inputs.set(*standardisation(policy.joined(data.state[rows], data.context[rows]),
                                       world))
    broadcast_module(policy, world)
    target = centred(data.rewards)  # [E, G]
    # foreach: one kernel per step for all parameters, same arithmetic (identical rewards
    # measured on 3 seeds), 15% faster on this small network
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay,
                            foreach=True)
    gen = torch.Generator().manual_seed(seed if not world.distributed
                                        else seed * 1009 + world.rank)
    per_step = -(-batch_size // world.size)
    policy.train()
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss, count = torch.zeros(()), 0  # a rank without events still joins the average
        if len(rows):
            j = rows[torch.randint(len(rows), (min(per_step, len(rows)),), generator=gen)]
            loss = (policy.scores(data.state[j], data.context[j]) - target[j]).pow(2).mean()
            count = len(j)
            loss.backward()
        average_gradients(policy.parameters(), count, world)
        opt.step()
        if step % CHECK_EVERY == 0 or step == steps:
            loss_sum, counted = all_sum([float(loss.detach()) * count, float(count)], world)
            if check(step, loss_sum / max(counted, 1.0)):
                break
    policy.eval()


def learn_grid_bandit(policy: GridBandit, data: BanditData, *, steps: int, batch_size: int,
                      lr: float, weight_decay: float, patience: int, seed: int,
                      world: World = SINGLE,
                      progress: Callable[[int, dict[str, float]], None] | None = None,
                      keep_best: bool = False) -> list[dict[str, float]]:
    """Fit policy.scores to the centred grid rewards (MSE, AdamW); returns a log every
    CHECK_EVERY steps. With early-stopping events (data.stop), the number of steps is
    chosen on them (the best greedy reward there; learning stops after `patience` checks
    without a better one), then the policy is refitted from its initial weights on every
    event for that many steps, so the stopping users still inform the policy; with
    keep_best the policy keeps its state at the best check instead (half the steps: the
    folds of the cross-fitted check). Under torchrun each rank holds its users' events;
    gradients and checks are averaged."""
    every = torch.arange(len(data.stop))
    fit = torch.nonzero(~data.stop).squeeze(1)
    held = torch.nonzero(data.stop).squeeze(1)
    start = copy.deepcopy(policy.state_dict())
    stopping = all_sum([float(len(held))], world)[0] > 0
    log: list[dict[str, float]] = []
    best = {"reward": -float("inf"), "step": steps, "since": 0}
    kept: dict[str, torch.Tensor] = {}  # the best check's state (keep_best)
    if progress is not None:
        progress(0, {})

    def choose(step: int, loss: float) -> bool:
        record = {"step": step, "loss": loss,
                  "fit_reward": greedy_reward(policy, data, fit, world),
                  "stop_reward": greedy_reward(policy, data, held, world)}
        if record["stop_reward"] > best["reward"]:
            best.update(reward=record["stop_reward"], step=step, since=0)
            if keep_best:
                kept.update(copy.deepcopy(policy.state_dict()))
        else:
            best["since"] += 1
        log.append(record)
        if progress is not None:
            progress(step, record)
        return best["since"] >= patience

    if stopping:
        _fit(policy, data, fit, steps=steps, batch_size=batch_size, lr=lr,
             weight_decay=weight_decay, seed=seed, world=world, check=choose)
        if keep_best:
            policy.load_state_dict(kept)
            log[-1]["chosen_steps"] = float(best["step"])
            return log
        policy.load_state_dict(start)

    def refit(step: int, loss: float) -> bool:
        record = {"step": step, "loss": loss, "refit": 1.0,
                  "fit_reward": greedy_reward(policy, data, every, world)}
        log.append(record)
        if progress is not None and not stopping:
            progress(step, record)
        return False

    _fit(policy, data, every, steps=int(best["step"]), batch_size=batch_size, lr=lr,
         weight_decay=weight_decay, seed=seed, world=world, check=refit)
    log[-1]["chosen_steps"] = float(best["step"])
    return log
