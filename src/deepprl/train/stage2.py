"""Stage 2 of Algorithm 1: learn the objective weights with the contextual actor-critic.

The stage-1 model is frozen. Each training event is a step of its user's trajectory:
state s_{u,t} and context C_{u,t}; the action alpha ranks the user's candidate items (the
items whose ground truth exists: the user's training-period items, or all items where the
matrix is fully observed) by sum_k alpha_k y_hat_k; the reward is the mean true reward of
the top-K; the next state is the user's next logged training event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.config import PolicyConfig
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import candidate_items
from deepprl.distributed import SINGLE, World, all_sum
from deepprl.eval.metrics import top_k_reward
from deepprl.policy.weights import Actor, GridQPolicy
from deepprl.recommender import Recommender
from deepprl.rl.ddpg import DDPG, Critic, Transitions, explore
from deepprl.rl.dqn import GridDQN
from deepprl.rl.reinforce import DirichletReinforce
from deepprl.train.checkpoint import Checkpoints, Snapshot
from deepprl.train.stage1 import Progress

CHECKPOINT_STEPS = 200  # a stage-2 checkpoint every this many steps (and after the last)


@dataclass(frozen=True)
class Trajectories:
    """Precomputed environment of the weight policy (tensors; E sampled events)."""

    state: torch.Tensor  # [N_train, S] every training event (next states included)
    context: torch.Tensor  # [N_train, Fc]
    sampled: torch.Tensor  # [E] rows of state that are decision points
    next_row: torch.Tensor  # [E] row of the next step, or the row itself when done
    done: torch.Tensor  # [E] float
    y_hat: torch.Tensor  # [E, C, K] predictions for the candidates
    reward: torch.Tensor  # [E, C] true reward of each candidate (0 where invalid)
    valid: torch.Tensor  # [E, C] bool


def build_trajectories(recommender: Recommender, data: Interactions, train: np.ndarray,
                       config: PolicyConfig, *, k: int, max_candidates: int, seed: int
                       ) -> Trajectories:
    """Freeze stage 1 into states and candidate predictions for training events."""
    rows = np.flatnonzero(train)  # training events in (user, time) order
    state = recommender.states(rows)
    same_user_next = np.r_[data.user[rows[1:]] == data.user[rows[:-1]], False]
    rng = np.random.default_rng([seed, 21])
    pick = np.arange(len(rows))
    if config.max_events and len(pick) > config.max_events:
        pick = np.sort(rng.choice(pick, size=config.max_events, replace=False))
    events = rows[pick]
    items = candidate_items(data, events, train, max_candidates=max_candidates, seed=seed)
    _, reward = data.candidate_values(events, items)
    valid = (items > 0) & np.isfinite(reward)
    keep = valid.sum(1) > k  # with <= k candidates every action gives the same top-K
    pick, events, items, reward, valid = pick[keep], events[keep], items[keep], reward[keep], \
        valid[keep]
    y_hat = recommender.score_events(events, items, states=state[pick]).y_hat  # no re-encoding
    return Trajectories(
        state=torch.from_numpy(state), context=torch.from_numpy(data.context[rows]),
        sampled=torch.from_numpy(pick),
        next_row=torch.from_numpy(np.where(same_user_next[pick], pick + 1, pick)),
        done=torch.from_numpy((~same_user_next[pick]).astype(np.float32)),
        y_hat=torch.from_numpy(y_hat), reward=torch.from_numpy(np.nan_to_num(reward)),
        valid=torch.from_numpy(valid),
    )


def require_events(env: Trajectories) -> None:
    """ValueError where no training event is a decision point: nothing to learn from."""
    if len(env.sampled) == 0:
        raise ValueError("no training event has more than k candidates: nothing to learn "
                         "weights from (lower --k or use a longer log)")


def sample_batch(env: Trajectories, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """Rows [min(batch_size, E)] of env's decision points, drawn with replacement."""
    require_events(env)
    n = len(env.sampled)
    return torch.randint(n, (min(batch_size, n),), generator=gen)


def transitions(env: Trajectories, j: torch.Tensor, action: torch.Tensor,
                 reward: torch.Tensor) -> Transitions:
    row, nxt = env.sampled[j], env.next_row[j]
    return Transitions(state=env.state[row], context=env.context[row], action=action,
                       reward=reward, next_state=env.state[nxt],
                       next_context=env.context[nxt], done=env.done[j])


def _greedy_reward(policy: nn.Module, env: Trajectories, j: torch.Tensor, k: int) -> float:
    row = env.sampled[j]
    with torch.no_grad():
        alpha = policy(env.state[row], env.context[row])
        return float(top_k_reward(env.y_hat[j], env.reward[j], env.valid[j], alpha, k).mean())


def _resume(checkpoints: Checkpoints | None, snapshot: Snapshot, steps: int,
            progress: Progress | None) -> tuple[int, list[dict[str, float]]]:
    """(first step, log so far) from the "stage2" checkpoint, or (0, [])."""
    position = checkpoints.restore("stage2", snapshot) if checkpoints is not None else None
    first, log = (position["step"], position["log"]) if position is not None else (0, [])
    if progress is not None:
        progress("policy", first, steps, {})
    return first, log


def _after_step(step: int, steps: int, log: list[dict[str, float]], snapshot: Snapshot,
                checkpoints: Checkpoints | None, progress: Progress | None) -> None:
    """Checkpoint every CHECKPOINT_STEPS steps and report progress (with the step's log
    record when it has one)."""
    if checkpoints is not None and (step % CHECKPOINT_STEPS == 0 or step == steps):
        checkpoints.save("stage2", snapshot, {"step": step, "log": log})
    if progress is not None:
        progress("policy", step, steps, log[-1] if log and log[-1]["step"] == step else {})


def learn_ddpg(actor: Actor, env: Trajectories, config: PolicyConfig, *, k: int,
               seed: int, progress: Progress | None = None, world: World = SINGLE,
               checkpoints: Checkpoints | None = None) -> list[dict[str, float]]:
    """The paper's contextual policy gradient (DDPG); returns a log every 100 steps.
    With `checkpoints`, resumes from (and writes) the "stage2" checkpoint.

    Under torchrun, `env` holds this rank's users' trajectories; each rank samples
    batch_size / size transitions per step and the gradients are averaged over ranks."""
    if config.critic not in ("td", "decomposed"):
        raise ValueError(f"policy.critic must be 'td' or 'decomposed', got {config.critic!r}")
    critic = Critic(state_dim=env.state.shape[1], context_dim=env.context.shape[1],
                    n_objectives=env.y_hat.shape[2], hidden=config.hidden,
                    layers=config.layers, use_context=config.use_context)
    actor.fit_inputs(env.state, env.context)  # under torchrun: rank 0's, broadcast by DDPG
    critic.inputs.load_state_dict(actor.inputs.state_dict())
    algo = DDPG(actor, critic, gamma=config.gamma, tau=config.tau,
                actor_lr=config.actor_lr, critic_lr=config.critic_lr,
                decomposed=config.critic == "decomposed",
                logit_penalty=config.logit_penalty, world=world)
    gen = torch.Generator().manual_seed(seed if not world.distributed
                                        else seed * 1009 + world.rank)
    per_step = -(-config.batch_size // world.size)
    snapshot = Snapshot(modules={"actor": actor, "critic": critic,
                                 "actor_target": algo.actor_target,
                                 "critic_target": algo.critic_target},
                        optimizers={"actor": algo.actor_opt, "critic": algo.critic_opt},
                        generators={"sample": gen})
    first, log = _resume(checkpoints, snapshot, config.steps, progress)
    actor.train()
    for step in range(first, config.steps):
        j = sample_batch(env, per_step, gen)
        row = env.sampled[j]
        with torch.no_grad():
            action = explore(actor(env.state[row], env.context[row]), config.exploration, gen,
                             vertex_share=config.vertex_exploration)
            r = top_k_reward(env.y_hat[j], env.reward[j], env.valid[j], action, k)
        t = transitions(env, j, action, r)
        td = algo.critic_step(t)
        q = -algo.actor_step(t.state, t.context)
        algo.update_targets()
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            values = all_sum([td, q, float(r.mean()), _greedy_reward(actor, env, j, k)], world)
            log.append({"step": step + 1, **{name: v / world.size for name, v in zip(
                ("td_loss", "q", "explore_reward", "greedy_reward"), values, strict=True)}})
        _after_step(step + 1, config.steps, log, snapshot, checkpoints, progress)
    actor.eval()
    return log


def learn_dqn(policy: GridQPolicy, env: Trajectories, config: PolicyConfig, *, k: int,
              seed: int, progress: Progress | None = None,
              checkpoints: Checkpoints | None = None) -> list[dict[str, float]]:
    """Ablation variant 6: DQN over a grid on the simplex."""
    algo = GridDQN(policy, gamma=config.gamma, tau=config.tau, lr=config.critic_lr,
                   decomposed=config.critic == "decomposed")
    gen = torch.Generator().manual_seed(seed)
    snapshot = Snapshot(modules={"policy": policy, "target": algo.target},
                        optimizers={"q": algo.opt}, generators={"sample": gen})
    first, log = _resume(checkpoints, snapshot, config.steps, progress)
    policy.train()
    for step in range(first, config.steps):
        j = sample_batch(env, config.batch_size, gen)
        row = env.sampled[j]
        index = algo.act(env.state[row], env.context[row], config.epsilon, gen)
        action = policy.grid[index]
        r = top_k_reward(env.y_hat[j], env.reward[j], env.valid[j], action, k)
        td = algo.step(transitions(env, j, action, r), index)
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            log.append({"step": step + 1, "td_loss": td, "explore_reward": float(r.mean()),
                        "greedy_reward": _greedy_reward(policy, env, j, k)})
        _after_step(step + 1, config.steps, log, snapshot, checkpoints, progress)
    policy.eval()
    return log


def learn_reinforce(actor: Actor, env: Trajectories, config: PolicyConfig, *, k: int,
                    seed: int, progress: Progress | None = None,
                    checkpoints: Checkpoints | None = None) -> list[dict[str, float]]:
    """Ablation variant 7: REINFORCE with a Dirichlet policy on the simplex."""
    actor.fit_inputs(env.state, env.context)
    algo = DirichletReinforce(actor, lr=config.actor_lr, concentration=config.concentration,
                              samples=config.samples)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # Dirichlet sampling draws from the global generator
    # (a checkpoint holds the global generator's state too)
    snapshot = Snapshot(modules={"actor": actor}, optimizers={"actor": algo.opt},
                        generators={"sample": gen})
    first, log = _resume(checkpoints, snapshot, config.steps, progress)
    actor.train()
    for step in range(first, config.steps):
        j = sample_batch(env, config.batch_size, gen)
        row = env.sampled[j]
        s, c = env.state[row], env.context[row]
        actions = algo.sample(s, c)  # [M, B, K]
        rewards = torch.stack([top_k_reward(env.y_hat[j], env.reward[j], env.valid[j], a, k)
                               for a in actions])
        loss = algo.step(s, c, actions, rewards)
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            log.append({"step": step + 1, "loss": loss, "explore_reward": float(rewards.mean()),
                        "greedy_reward": _greedy_reward(actor, env, j, k)})
        _after_step(step + 1, config.steps, log, snapshot, checkpoints, progress)
    actor.eval()
    return log


Learner = Callable[..., list[dict[str, float]]]
