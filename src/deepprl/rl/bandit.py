"""Full-information contextual bandit over a grid on the weight simplex (learning only).

On a logged trajectory the next state does not depend on alpha, and the reward of every
alpha is computable from the event's logged candidates: per event the reward r_g of each
grid point g is known (deepprl.eval.headroom.grid_rewards), so there is nothing to explore.
The estimator regresses each grid point's reward *centred per event*, r_g - mean_g' r_g',
with squared error, and the policy acts by the argmax (deepprl.policy.weights.GridBandit).
Centring removes the event's level (how good its candidates are at all), which the argmax
ignores but which dominates the variance of the raw rewards; the regression is a proper
scoring rule for the mean, so the argmax of the fit is the Bayes decision. Overfitting is
kept in check by weight decay and by early stopping: the learning users' stopping events
choose the number of steps, after which the policy is refitted on every learning event for
that many steps. Several independent bandits (the folds of the cross-fitted check and the
served policy) learn in one joint fit, their layers stacked into batched products
(learn_grid_bandits).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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


@dataclass
class Member:
    """One bandit of a joint fit (_fit): its policy (trained in place), the rows of the
    shared data it learns from, its step budget and its stopping check."""

    policy: GridBandit
    rows: torch.Tensor
    steps: int
    check: Check


def _linears(policy: GridBandit) -> list[nn.Linear]:
    return [m for m in policy.net if isinstance(m, nn.Linear)]


@torch.no_grad()
def _load_slice(policy: GridBandit, weights: list[torch.Tensor], biases: list[torch.Tensor],
                m: int) -> None:
    """Member m's slice of the stacked layers -> its own policy."""
    for layer, w, b in zip(_linears(policy), weights, biases, strict=True):
        layer.weight.copy_(w[m].t())
        layer.bias.copy_(b[m, 0])


def _stack(data: BanditData, members: list[Member], world: World
           ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each member's standardisation set on its rows, then the members' layers as leaf
    tensors: weights [M, in, out], biases [M, 1, out]."""
    for m in members:
        m.policy.inputs.set(*standardisation(m.policy.joined(data.state[m.rows],
                                                             data.context[m.rows]), world))
        broadcast_module(m.policy, world)
    layers = list(zip(*(_linears(m.policy) for m in members), strict=True))
    weights = [torch.stack([lin.weight.detach().t() for lin in same]).requires_grad_()
               for same in layers]
    biases = [torch.stack([lin.bias.detach()[None] for lin in same]).requires_grad_()
              for same in layers]
    return weights, biases


def _draw(members: list[Member], running: list[int], sizes: list[int],
          gens: list[torch.Generator]) -> torch.Tensor:
    """[M, n] rows of each running member's minibatch, drawn as its own fit would draw
    them; row 0 where a member draws fewer than n (its scale masks them out of the loss)
    and for a stopped member (its policy already holds its final state; its slice is no
    longer read)."""
    rows = torch.zeros(len(members), max(sizes), dtype=torch.long)
    for i in running:
        m = members[i]
        if sizes[i]:
            rows[i, : sizes[i]] = m.rows[torch.randint(len(m.rows), (sizes[i],),
                                                       generator=gens[i])]
    return rows


def _stacked_scores(h: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]
                    ) -> torch.Tensor:
    """GridBandit.net for every member at once: [M, n, D] standardised -> [M, n, G]."""
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = torch.baddbmm(b, h, w)
        h = torch.relu(h) if layer < len(weights) - 1 else h
    return h


def _fit(data: BanditData, members: list[Member], *, batch_size: int, lr: float,
         weight_decay: float, seed: int, world: World) -> None:
    """AdamW on the squared error of each member's policy.scores against the centred grid
    rewards of its rows of `data` (standardised on them), from the policies' current
    weights.

    The members (the folds of the cross-fitted check and the served policy's search) are
    independent fits trained at once: their layers are stacked into [M, in, out] tensors,
    so each layer is one batched matrix product for all of them instead of one small
    product per member (a step's cost is mostly per-operation, so M members cost far less
    than M fits). Each member keeps its own rows, sampling generator (seeded as a fit on
    its own), standardisation, step budget and check; their losses are summed, so each
    member's gradient is its own loss's, and AdamW acts element-wise: only the rounding
    of the batched products differs from fitting them one by one."""
    if not members:
        return
    if world.distributed and len(members) != 1:
        raise ValueError("under torchrun the bandit fits one policy at a time")
    weights, biases = _stack(data, members, world)
    mean = torch.stack([m.policy.inputs.mean for m in members])[:, None]  # [M, 1, D]
    std = torch.stack([m.policy.inputs.std for m in members])[:, None]
    inputs = members[0].policy.joined(data.state, data.context)  # [E, D]: the members' own
    target = centred(data.rewards)  # [E, G]
    # foreach: one kernel per step for all parameters, same arithmetic
    opt = torch.optim.AdamW(weights + biases, lr=lr, weight_decay=weight_decay, foreach=True)
    gens = [torch.Generator().manual_seed(seed if not world.distributed
                                          else seed * 1009 + world.rank) for _ in members]
    sizes = [min(-(-batch_size // world.size), len(m.rows)) for m in members]
    scale = torch.zeros(len(members), max(sizes), 1)  # 1 / (n_m G) on a member's draws
    for i, size in enumerate(sizes):
        scale[i, :size] = 1.0 / max(size * target.shape[1], 1)
    running = list(range(len(members)))
    for step in range(1, max(m.steps for m in members) + 1):
        opt.zero_grad()
        loss = torch.zeros(len(members))  # a rank without events still joins the average
        if any(sizes):
            rows = _draw(members, running, sizes, gens)  # [M, n]
            h = _stacked_scores((inputs[rows] - mean) / std, weights, biases)
            loss = ((h - target[rows]).pow(2) * scale).sum((1, 2))  # [M]: each one's mean
            loss.sum().backward()
        average_gradients(weights + biases, sizes[0], world)
        opt.step()
        for i in [i for i in running if step % CHECK_EVERY == 0 or step == members[i].steps]:
            _load_slice(members[i].policy, weights, biases, i)
            loss_sum, counted = all_sum([float(loss[i].detach()) * sizes[i],
                                         float(sizes[i])], world)
            done = members[i].check(step, loss_sum / max(counted, 1.0))
            if done or step == members[i].steps:
                running.remove(i)  # its policy holds its state at this step
        if not running:
            break
    for m in members:
        m.policy.eval()


@dataclass
class Job:
    """One policy to learn with learn_grid_bandits: learn_grid_bandit's arguments, and the
    rows of the shared data it learns from (None: all)."""

    policy: GridBandit
    keep_best: bool = False
    progress: Callable[[int, dict[str, float]], None] | None = None
    rows: torch.Tensor | None = None
    record_fit: bool = True
    """Log the greedy reward on the rows it fits (a forward pass over all of them at every
    check; the folds of the check, whose logs only give their chosen steps, skip it)."""


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
    return learn_grid_bandits(data, [Job(policy, keep_best, progress)], steps=steps,
                              batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                              patience=patience, seed=seed, world=world)[0]


class _Search:
    """The bookkeeping of learn_grid_bandits for one job: its log, the best check of its
    search for the number of steps, (keep_best) that check's state, and the refit.

    The refit (from the initial weights, on every row, for the chosen number of steps)
    does not depend on how many steps it will get: a run of s steps is the first s steps
    of a longer one (AdamW has no schedule). So it runs beside the search, from the same
    start, with a snapshot at every check, and ends as the snapshot at the chosen step."""

    def __init__(self, data: BanditData, job: Job, steps: int, patience: int,
                 world: World) -> None:
        self.data, self.job, self.patience, self.world = data, job, patience, world
        self.rows = torch.arange(len(data.stop)) if job.rows is None else job.rows
        self.fit = self.rows[~data.stop[self.rows]]  # the rows it learns from in the search
        self.held = self.rows[data.stop[self.rows]]  # the rows that choose its steps
        self.log: list[dict[str, float]] = []
        self.refit_log: list[dict[str, float]] = []
        self.best = {"reward": -float("inf"), "step": steps, "since": 0}
        self.kept: dict[str, torch.Tensor] = {}
        self.stopping = all_sum([float(len(self.held))], world)[0] > 0
        self.searched = False  # the search has stopped
        self.beside = not world.distributed  # the refit runs beside the search (see _fit)
        self.refitter = copy.deepcopy(job.policy)  # the refit's policy
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}  # the refit's, per check
        if job.progress is not None:
            job.progress(0, {})

    def choose(self, step: int, loss: float) -> bool:
        """The search's check: record, keep the best, stop after `patience` worse ones."""
        job, world = self.job, self.world
        record = {"step": step, "loss": loss}
        if job.record_fit:
            record["fit_reward"] = greedy_reward(job.policy, self.data, self.fit, world)
        record["stop_reward"] = greedy_reward(job.policy, self.data, self.held, world)
        if record["stop_reward"] > self.best["reward"]:
            self.best.update(reward=record["stop_reward"], step=step, since=0)
            if job.keep_best:
                self.kept.update(copy.deepcopy(job.policy.state_dict()))
        else:
            self.best["since"] += 1
        self.log.append(record)
        if job.progress is not None:
            job.progress(step, record)
        self.searched = self.best["since"] >= self.patience
        return self.searched

    def refit(self, step: int, loss: float) -> bool:
        """The refit's check: record (and beside a search, keep a snapshot; stop once the
        search has stopped: the chosen step lies behind)."""
        record = {"step": step, "loss": loss, "refit": 1.0,
                  "fit_reward": greedy_reward(self.refitter, self.data, self.rows,
                                              self.world)}
        self.refit_log.append(record)
        if not (self.stopping and self.beside):
            if self.job.progress is not None and not self.stopping:
                self.job.progress(step, record)
            return False
        self.snapshots[step] = copy.deepcopy(self.refitter.state_dict())
        return self.searched

    def finish(self) -> list[dict[str, float]]:
        """The job's policy at its end (the best check's state, or the refit at the chosen
        step) and its log."""
        chosen = int(self.best["step"])
        if self.stopping and self.job.keep_best:
            self.job.policy.load_state_dict(self.kept)
        else:
            self.job.policy.load_state_dict(self.snapshots[chosen] if self.stopping and
                                            self.beside else self.refitter.state_dict())
            self.log += [r for r in self.refit_log if r["step"] <= chosen]
        self.job.policy.eval()
        self.log[-1]["chosen_steps"] = float(chosen)
        return self.log


def learn_grid_bandits(data: BanditData, jobs: list[Job], *, steps: int, batch_size: int,
                       lr: float, weight_decay: float, patience: int, seed: int,
                       world: World = SINGLE) -> list[list[dict[str, float]]]:
    """learn_grid_bandit for several independent policies at once (the joint _fit), each
    on its rows of `data`: every search for the number of steps and every refit in one
    joint fit. Returns each job's log."""
    searches = [_Search(data, job, steps, patience, world) for job in jobs]
    options: dict[str, Any] = {"batch_size": batch_size, "lr": lr,
                               "weight_decay": weight_decay, "seed": seed, "world": world}
    searching = [Member(s.job.policy, s.fit, steps, s.choose) for s in searches if s.stopping]

    def refits() -> list[Member]:  # after the searches in a joint fit: see _Search.refit
        return [Member(s.refitter, s.rows, int(s.best["step"]) if s.stopping and not s.beside
                       else steps, s.refit)
                for s in searches if not (s.stopping and s.job.keep_best)]

    if world.distributed:  # one member per fit (gradients are averaged with one count)
        _fit(data, searching, **options)
        _fit(data, refits(), **options)
    else:
        _fit(data, searching + refits(), **options)
    return [s.finish() for s in searches]
