"""REINFORCE with a stochastic Dirichlet policy on the simplex (ablation variant 7)."""

from __future__ import annotations

import torch

from deepprl.policy.weights import Actor


class DirichletReinforce:
    """alpha ~ Dirichlet(concentration * mu(s, C)); the actor's mean mu is what acts.

    Gradient: sum over M samples per state of (r_m - mean of the other samples' r) *
    grad log p(alpha_m). The rest of the return after this step does not depend on
    alpha_m in logged trajectories (the next state is the logged one), so it is left out:
    the estimate stays unbiased and loses that variance. The leave-one-out mean is the
    baseline (RLOO)."""

    def __init__(self, actor: Actor, *, lr: float, concentration: float = 20.0,
                 samples: int = 4) -> None:
        if concentration <= 0 or samples < 2:
            raise ValueError("need concentration > 0 and samples >= 2")
        self.actor, self.concentration, self.samples = actor, concentration, samples
        self.opt = torch.optim.Adam(actor.parameters(), lr=lr, foreach=True)

    def distribution(self, state: torch.Tensor, context: torch.Tensor
                     ) -> torch.distributions.Dirichlet:
        mean = self.actor(state, context).clamp(min=1e-4)
        return torch.distributions.Dirichlet(self.concentration * mean)

    def sample(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """[M, B, K] actions on the simplex."""
        with torch.no_grad():
            return self.distribution(state, context).sample((self.samples,)).clamp(min=0)

    def step(self, state: torch.Tensor, context: torch.Tensor, actions: torch.Tensor,
             rewards: torch.Tensor) -> float:
        """actions [M, B, K], rewards [M, B]; returns the mean advantage-weighted loss."""
        M = rewards.shape[0]
        baseline = (rewards.sum(0, keepdim=True) - rewards) / (M - 1)
        advantage = rewards - baseline
        safe = actions.clamp(min=1e-6)
        safe = safe / safe.sum(-1, keepdim=True)
        log_p = self.distribution(state, context).log_prob(safe)  # [M, B]
        loss = -(advantage.detach() * log_p).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())
