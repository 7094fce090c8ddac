"""DQN over a discretised simplex of weights (ablation variant 6 of the paper)."""

from __future__ import annotations

import copy

import torch

from deepprl.policy.weights import GridQPolicy
from deepprl.rl.ddpg import Transitions, soft_update


class GridDQN:
    """Learns a GridQPolicy: epsilon-greedy over the grid, a target network with soft
    updates, and the same split of Q into immediate and future parts as the DDPG critic
    (decomposed=True: the immediate part regresses r; otherwise both regress the TD
    target r + gamma * (1 - done) * max_g Q'(s', g))."""

    def __init__(self, policy: GridQPolicy, *, gamma: float, tau: float, lr: float,
                 decomposed: bool = True) -> None:
        if not 0 <= gamma < 1 or not 0 < tau <= 1:
            raise ValueError(f"need 0 <= gamma < 1 and 0 < tau <= 1, got {gamma}, {tau}")
        self.policy = policy
        self.target = copy.deepcopy(policy).requires_grad_(False)
        self.gamma, self.tau, self.decomposed = gamma, tau, decomposed
        self.opt = torch.optim.Adam(policy.parameters(), lr=lr, foreach=True)

    def act(self, state: torch.Tensor, context: torch.Tensor, epsilon: float,
            generator: torch.Generator) -> torch.Tensor:
        """Grid indices [B]: greedy, or uniform with probability epsilon."""
        with torch.no_grad():
            now, _ = self.policy.q_values(state, context)
        greedy = now.argmax(-1)
        n = len(self.policy.grid)
        random = torch.randint(n, greedy.shape, generator=generator)
        explore = torch.rand(greedy.shape, generator=generator) < epsilon
        return torch.where(explore, random, greedy)

    def td_target(self, t: Transitions) -> torch.Tensor:
        with torch.no_grad():
            now, later = self.target.q_values(t.next_state, t.next_context)
            return t.reward + self.gamma * (1.0 - t.done) * (now.max(-1).values + later)

    def step(self, t: Transitions, actions: torch.Tensor) -> float:
        """One update on transitions whose actions are grid indices [B]; returns the
        squared TD error before it."""
        target = self.td_target(t)
        now, later = self.policy.q_values(t.state, t.context)
        chosen = now.gather(1, actions[:, None]).squeeze(1)
        td = (chosen + later - target).pow(2).mean()
        if self.decomposed:
            loss = (chosen - t.reward).pow(2).mean() + (later - (target - t.reward)).pow(2).mean()
        else:
            loss = td
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        soft_update(self.target, self.policy, self.tau)
        return float(td.detach())
