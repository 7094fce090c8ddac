"""Contextual Policy Gradient: deterministic policy gradient (DDPG) for the weight actor.

The critic Q(s, C, alpha) regresses r + gamma * (1 - done) * Q'(s', C', mu'(s', C'))
(paper eq. 5); the actor ascends Q(s, C, mu(s, C)) (eq. 4); targets follow by soft
updates theta' <- tau * theta + (1 - tau) * theta' (eq. 6, with tau << 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from deepprl.distributed import SINGLE, World, average_gradients, broadcast_module
from deepprl.models.layers import mlp
from deepprl.policy.weights import Actor, Standardise


class Critic(nn.Module):
    """Q(s, C, alpha) -> [B], as R(s, C, alpha) + F(s, C): the immediate reward of the
    action plus the discounted value of what follows.

    Both parts are trained together on the TD target r + gamma * Q'(s', C', mu'(s', C'))
    (eq. 5), or, where the next state does not depend on the action (logged trajectories:
    the next state is the user's next logged event), R on r and F on the rest; see
    DDPG(decomposed=True)."""

    def __init__(self, *, state_dim: int, context_dim: int, n_objectives: int,
                 hidden: int = 64, layers: int = 3, use_context: bool = True) -> None:
        super().__init__()
        self.use_context = use_context
        in_dim = state_dim + (context_dim if use_context else 0)
        self.inputs = Standardise(in_dim)  # the actor's statistics (learn_ddpg copies them)
        self.future = mlp([in_dim, *([hidden] * layers), 1], "relu")
        self.immediate = mlp([in_dim + n_objectives, *([hidden] * layers), 1], "relu")

    def parts(self, state: torch.Tensor, context: torch.Tensor, action: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R(s, C, alpha) [B], F(s, C) [B])."""
        x = self.inputs(torch.cat([state, context], dim=-1) if self.use_context else state)
        return (self.immediate(torch.cat([x, action], dim=-1)).squeeze(-1),
                self.future(x).squeeze(-1))

    def forward(self, state: torch.Tensor, context: torch.Tensor, action: torch.Tensor
                ) -> torch.Tensor:
        now, later = self.parts(state, context, action)
        return now + later


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta' for every parameter."""
    targets: list[torch.Tensor] = list(target.parameters())
    sources: list[torch.Tensor] = list(source.parameters())
    if len(targets) != len(sources):
        raise ValueError("target and source networks differ in their parameters")
    torch._foreach_mul_(targets, 1.0 - tau)  # two kernels for all parameters, not 2 per one
    torch._foreach_add_(targets, sources, alpha=tau)


def explore(alpha: torch.Tensor, share: float, generator: torch.Generator, *,
            vertex_share: float = 0.0) -> torch.Tensor:
    """Mix Dirichlet(1) noise into alpha [B, K] (a convex mix stays on the simplex); a
    `vertex_share` of the rows instead takes a uniformly drawn exact vertex. A mix alone
    reaches a vertex only from it, and a softmax actor never sits exactly on one, so
    without vertex draws the critic would never see the reward there (on a saturated
    predictor it jumps at the vertex: docs/model.md)."""
    if not 0 <= share <= 1:
        raise ValueError(f"exploration share must lie in [0, 1], got {share}")
    if not 0 <= vertex_share <= 1:
        raise ValueError(f"vertex exploration share must lie in [0, 1], got {vertex_share}")
    out = alpha
    if share > 0:
        gamma = torch.empty_like(alpha).exponential_(generator=generator)  # Dirichlet(1)
        out = (1.0 - share) * alpha + share * gamma / gamma.sum(-1, keepdim=True)
    if vertex_share > 0:
        B, K = alpha.shape
        at_vertex = torch.rand(B, generator=generator) < vertex_share  # [B]
        corner = torch.randint(K, (B,), generator=generator)  # [B]
        vertex = torch.nn.functional.one_hot(corner, K).to(alpha.dtype)  # [B, K]
        out = torch.where(at_vertex[:, None], vertex, out)
    return out


@dataclass(frozen=True)
class Transitions:
    """A batch of (s, C, a, r, s', C', done) tensors."""

    state: torch.Tensor  # [B, S]
    context: torch.Tensor  # [B, Fc]
    action: torch.Tensor  # [B, K]
    reward: torch.Tensor  # [B]
    next_state: torch.Tensor  # [B, S]
    next_context: torch.Tensor  # [B, Fc]
    done: torch.Tensor  # [B] float, 1 at the end of a user's trajectory


class DDPG:
    """Owns the critic, the target networks and both optimizers; the actor only acts.

    decomposed: fit the critic's action part R to the reward and its state part F to the
    discounted rest of the TD target. Valid when the next state does not depend on the
    action; it keeps the action's small effect on r from being drowned by the error of a
    long-horizon value (measured: see docs/model.md).

    logit_penalty: lambda of lambda * mean((logit - mean logit)^2) added to the actor's
    loss. A softmax reaches a vertex only as the logit gap grows without bound, and there
    dalpha/dlogit vanishes (1.7e-5 at a gap of 11: the vertex absorbs the actor); the
    penalty keeps the gap finite without the hard bound that kept alpha from the
    near-vertex optima many users have. The logits' common shift is left free (softmax
    ignores it).

    world: under torchrun, gradients are averaged over ranks before each step, so all
    replicas (and their soft-updated targets) stay identical."""

    def __init__(self, actor: Actor, critic: Critic, *, gamma: float, tau: float,
                 actor_lr: float, critic_lr: float, decomposed: bool = False,
                 logit_penalty: float = 0.0, world: World = SINGLE) -> None:
        if not 0 <= gamma < 1 or not 0 < tau <= 1:
            raise ValueError(f"need 0 <= gamma < 1 and 0 < tau <= 1, got {gamma}, {tau}")
        if not logit_penalty >= 0:
            raise ValueError(f"need logit_penalty >= 0, got {logit_penalty}")
        self.logit_penalty = logit_penalty
        self.actor, self.critic, self.world = actor, critic, world
        broadcast_module(actor, world)  # identical replicas on every rank (torchrun)
        broadcast_module(critic, world)
        self.actor_target = copy.deepcopy(actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.gamma, self.tau, self.decomposed = gamma, tau, decomposed
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=actor_lr, foreach=True)
        self.critic_opt = torch.optim.Adam(critic.parameters(), lr=critic_lr, foreach=True)

    def td_target(self, t: Transitions) -> torch.Tensor:
        with torch.no_grad():
            next_q = self.critic_target(t.next_state, t.next_context,
                                        self.actor_target(t.next_state, t.next_context))
            return t.reward + self.gamma * (1.0 - t.done) * next_q

    def critic_step(self, t: Transitions) -> float:
        """One gradient step on the squared TD error (eq. 5); returns that error before it."""
        target = self.td_target(t)
        now, later = self.critic.parts(t.state, t.context, t.action)
        td_loss = (now + later - target).pow(2).mean()
        if self.decomposed:  # same fixed point, but the action's part sees only r
            loss = (now - t.reward).pow(2).mean() + (later - (target - t.reward)).pow(2).mean()
        else:
            loss = td_loss
        self.critic_opt.zero_grad()
        loss.backward()
        average_gradients(self.critic.parameters(), len(t.reward), self.world)
        self.critic_opt.step()
        return float(td_loss.detach())

    def actor_step(self, state: torch.Tensor, context: torch.Tensor) -> float:
        """One ascent step on Q(s, C, mu(s, C)) (eq. 4) minus the logit penalty; returns -Q
        before it."""
        self.critic.requires_grad_(False)  # only the actor learns here: skip Q's own gradients
        try:
            logits = self.actor.logits(state, context)  # [B, K]
            loss = -self.critic(state, context, torch.softmax(logits, dim=-1)).mean()
            centred = logits - logits.mean(-1, keepdim=True)
            self.actor_opt.zero_grad()
            (loss + self.logit_penalty * centred.pow(2).mean()).backward()
        finally:
            self.critic.requires_grad_(True)
        average_gradients(self.actor.parameters(), len(state), self.world)
        self.actor_opt.step()
        return float(loss.detach())

    def update_targets(self) -> None:
        soft_update(self.actor_target, self.actor, self.tau)
        soft_update(self.critic_target, self.critic, self.tau)
