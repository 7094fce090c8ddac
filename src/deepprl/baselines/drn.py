"""DRN: a deep reinforcement learning framework for news recommendation (Zheng, Zhang, Zheng,
Xiang, Yuan, Xie & Li, WWW 2018).

Q(s, a) = V(s) + A(s, a) - mean_{a' in candidates} A(s, a') (dueling head): V reads the
state features (user features, event context, a summary of the user's history), A reads
those plus the action features (item embedding, item features, and user-item features: the
item's features times their mean over the user's history, DRN's "how often the user met this
category" signal). Trained as a double DQN on the logged trajectories (common.LoggedEnv):
y = r + gamma Q'(s', argmax_{a' in C(s')} Q(s', a')), with a target network and replay.

Reward: r = (1 - alpha_act) * reward(item) + alpha_act * activeness, where reward(item) is
the dataset's reward of the chosen item at the event (the logged reward for the logged pair)
and activeness = 2^(-gap / half_life) with gap the hours until the user's next training
event (0 when the user does not come back in the training period): DRN's survival-model
user activeness with a constant hazard, ln 2 / half_life. The convex mix keeps r in [0, 1].
Exploration: DRN's explore network, a copy of Q with perturbed parameters
W~ = W + explore_scale * U(-1, 1) * W, whose top item replaces the exploiting network's for a
share of the events (DRN interleaves the two lists).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from deepprl.baselines import ItemPolicyEntry
from deepprl.baselines.common import (
    ItemEmbedding,
    LoggedEnv,
    Replay,
    SideFeatures,
    batch_to,
    check_positive,
    check_unit,
    choose,
    greedy_target,
    module_device,
    reinitialise,
)
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch
from deepprl.data.splits import Split
from deepprl.models.layers import mlp


@dataclass(frozen=True)
class DRNConfig:
    """Dueling double DQN with user activeness (Zheng et al. 2018)."""

    item_dim: int = 32
    """Item embedding size (id embedding + projected item features)."""
    hidden: int = 64
    """Hidden units of the value and advantage networks."""
    gamma: float = 0.5
    """Discount of future rewards."""
    lr: float = 1e-3
    """Adam learning rate."""
    steps: int = 1000
    """Cap on environment-and-update steps."""
    epochs: float = 2.0
    """Acting passes over the training events: steps = min(steps, epochs * N / act_batch)."""
    batch_size: int = 64
    """Replayed transitions per update."""
    act_batch: int = 64
    """Logged events acted on per step."""
    buffer_size: int = 20000
    """Replay capacity (first in, first out)."""
    warmup: int = 256
    """Transitions stored before updates start."""
    target_every: int = 100
    """Steps between hard copies of the online network into the target network."""
    epsilon: float = 0.3
    """Share of uniformly random actions on top of the explore network's."""
    explore_share: float = 0.5
    """Share of events whose action comes from the explore network."""
    explore_scale: float = 0.1
    """alpha of the explore network's perturbation W + alpha * U(-1, 1) * W."""
    activeness_weight: float = 0.1
    """alpha_act: r = (1 - alpha_act) * reward + alpha_act * activeness."""
    activeness_half_life_hours: float = 24.0
    """Hours after which a return visit counts half as active (hazard ln 2 / half-life)."""
    max_candidates: int = 100
    """Cap on a user's training candidate set (seeded subsample); 0 = no cap."""


def dueling(value: torch.Tensor, advantage: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Q = V + A - mean_valid A: value [B], advantage [B, C], valid [B, C] -> Q [B, C]."""
    mask = valid.to(advantage.dtype)
    mean = (advantage * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return value[:, None] + advantage - mean[:, None]


def activeness(gap_hours: np.ndarray, half_life_hours: float) -> np.ndarray:
    """2^(-gap / half_life) in (0, 1]; an infinite gap (no return) gives 0."""
    return np.exp2(-np.asarray(gap_hours, dtype=np.float64) / half_life_hours)


class DuelingQ(nn.Module):
    """Q(s, a) [B, C] from state features and action features (see the module docstring)."""

    def __init__(self, *, user_features: torch.Tensor, item_features: torch.Tensor,
                 context_features: int, history_length: int, config: DRNConfig) -> None:
        super().__init__()
        check_positive(item_dim=config.item_dim, hidden=config.hidden)
        h, fi = config.hidden, item_features.shape[1]
        self.history_length = history_length
        self.items = ItemEmbedding(item_features=item_features, dim=config.item_dim)
        self.side = SideFeatures(user_features=user_features,
                                 context_features=context_features, dim=h // 2)
        state_dim = self.side.out_dim + config.item_dim + fi
        action_dim = 2 * config.item_dim + 2 * fi
        self.value = mlp([state_dim, h, h, 1])
        # A(s, a) = MLP([state; action]); its first layer is split so that the state part is
        # computed once per event rather than once per candidate
        self.adv_state = nn.Linear(state_dim, h)
        self.adv_action = nn.Linear(action_dim, h, bias=False)
        self.advantage = mlp([h, h, 1])

    def features(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """State features [B, S], history mean item embedding [B, Di] and features [B, Fi]."""
        mask = batch.hist_mask.float()
        count = mask.sum(1, keepdim=True).clamp(min=1.0)
        hist_emb = (self.items(batch.hist_items) * mask[..., None]).sum(1) / count
        hist_feat = (self.items.feature_table[batch.hist_items] * mask[..., None]).sum(1) / count
        state = torch.cat([self.side(batch.user, batch.context), hist_emb, hist_feat], dim=-1)
        return state, hist_emb, hist_feat

    def forward(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        batch = batch_to(batch, module_device(self))
        items = items.to(module_device(self))
        state, hist_emb, hist_feat = self.features(batch)
        emb, feat = self.items(items), self.items.feature_table[items]  # [B, C, Di], [B, C, Fi]
        action = torch.cat([emb, emb * hist_emb[:, None], feat, feat * hist_feat[:, None]], -1)
        hidden = torch.relu(self.adv_state(state)[:, None] + self.adv_action(action))
        return dueling(self.value(state)[:, 0], self.advantage(hidden)[..., 0], items > 0)


def td_loss(net: DuelingQ, target: DuelingQ, batch: Batch, items: torch.Tensor,
            chosen: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
            next_batch: Batch, next_items: torch.Tensor, gamma: float) -> torch.Tensor:
    """Double-DQN squared TD error: items [B, C] the state's candidates (they centre the
    advantage), chosen [B] the column acted on, reward and done [B], next_items [B, C']."""
    with torch.no_grad():
        y = greedy_target(reward, done, gamma, net(next_batch, next_items),
                          target(next_batch, next_items), next_items > 0)
    q = net(batch, items).gather(1, chosen[:, None])[:, 0]
    return 0.5 * (q - y).pow(2).mean()


def build(config: DRNConfig, data: Interactions, history_length: int) -> DuelingQ:
    return DuelingQ(user_features=torch.from_numpy(data.user_features),
                    item_features=torch.from_numpy(data.item_features),
                    context_features=data.context.shape[1], history_length=history_length,
                    config=config)


def fit(module: nn.Module, data: Interactions, split: Split, config: DRNConfig, k: int,
        seed: int) -> list[dict[str, float]]:
    """Dueling double DQN on the logged trajectories (see the module docstring)."""
    if not isinstance(module, DuelingQ):
        raise TypeError(f"drn fits a DuelingQ, got {type(module).__name__}")
    check_positive(steps=config.steps, epochs=config.epochs, batch_size=config.batch_size,
                   act_batch=config.act_batch, target_every=config.target_every,
                   buffer_size=config.buffer_size,
                   activeness_half_life_hours=config.activeness_half_life_hours)
    check_unit(gamma=config.gamma, epsilon=config.epsilon, explore_share=config.explore_share,
               activeness_weight=config.activeness_weight)
    reinitialise(module, seed)
    device = module_device(module)
    env = LoggedEnv(data, split, history_length=module.history_length,
                    max_candidates=config.max_candidates, seed=seed)
    target = copy.deepcopy(module).requires_grad_(False)
    opt = torch.optim.Adam(module.parameters(), lr=config.lr, foreach=True)
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng([seed, 43])
    replay = Replay(config.buffer_size, 1)
    log: list[dict[str, float]] = []
    losses: list[float] = []
    n_steps = min(config.steps, max(1, int(np.ceil(config.epochs * len(env) / config.act_batch))))
    module.train()
    for step in range(n_steps):
        reward = _act(module, env, replay, config, rng, gen)
        if len(replay) >= min(config.warmup, config.buffer_size):
            tr = replay.sample(config.batch_size, gen)
            rows, nrows = tr["row"].numpy(), tr["next_row"].numpy()
            items = torch.from_numpy(env.candidates(rows))
            chosen = (items == tr["item"][:, None]).float().argmax(1)  # the acted column
            loss = td_loss(module, target, batch_to(env.batch(rows), device), items.to(device),
                           chosen.to(device), tr["reward"][:, 0].to(device),
                           tr["done"].to(device), batch_to(env.batch(nrows), device),
                           torch.from_numpy(env.candidates(nrows)).to(device), config.gamma)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if (step + 1) % config.target_every == 0:
            target.load_state_dict(module.state_dict())
        if (step + 1) % 100 == 0 or step + 1 == n_steps:
            log.append({"step": float(step + 1),
                        "td_loss": float(np.mean(losses[-100:] or [0.0])),
                        "reward": reward})
    module.eval()
    return log


def _perturbed(net: DuelingQ, scale: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """DRN's explore network: W + scale * U(-1, 1) * W for every parameter."""
    return {name: p.detach() + scale * (2 * torch.rand(p.shape, generator=gen) - 1).to(p)
            * p.detach() for name, p in net.named_parameters()}


def _act(net: DuelingQ, env: LoggedEnv, replay: Replay, config: DRNConfig,
         rng: np.random.Generator, gen: torch.Generator) -> float:
    """Top item of the exploit or the explore network at act_batch sampled events; stores
    the transitions with the activeness-augmented reward; returns their mean item reward."""
    pos = rng.integers(len(env), size=config.act_batch)
    rows = env.steps.rows[pos]
    items = torch.from_numpy(env.candidates(rows))
    valid = items > 0
    device = module_device(net)
    batch, items_d = batch_to(env.batch(rows), device), items.to(device)
    with torch.no_grad():
        exploit = choose(net(batch, items_d).cpu(), valid)
        explore_q = functional_call(net, _perturbed(net, config.explore_scale, gen),
                                    (batch, items_d))
        explore = choose(explore_q.cpu(), valid)
    use = torch.rand(len(rows), generator=gen) < config.explore_share
    col = torch.where(use, explore, exploit)
    uniform = torch.rand(len(rows), generator=gen) < config.epsilon
    col = torch.where(uniform, choose(torch.rand(valid.shape, generator=gen), valid), col)
    chosen = items[torch.arange(len(rows)), col].numpy()
    _, item_reward = env.outcome(rows, chosen)
    active = np.where(env.steps.done[pos], 0.0,
                      activeness(env.steps.gap_hours[pos], config.activeness_half_life_hours))
    r = (1 - config.activeness_weight) * item_reward + config.activeness_weight * active
    ok = np.isfinite(r) & (chosen > 0)
    replay.add(row=torch.from_numpy(rows[ok]), item=torch.from_numpy(chosen[ok]),
               reward=torch.from_numpy(r[ok].astype(np.float32))[:, None],
               next_row=torch.from_numpy(env.steps.next_row[pos][ok]),
               done=torch.from_numpy(env.steps.done[pos][ok].astype(np.float32)))
    return float(item_reward[ok].mean()) if ok.any() else 0.0


ENTRY = ItemPolicyEntry(
    config=DRNConfig, build=build, fit=fit,
    description="DRN (Zheng et al. 2018): dueling double DQN over user, context, history and "
                "item features; reward plus user activeness; perturbed explore network")
