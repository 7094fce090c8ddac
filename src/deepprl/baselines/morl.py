"""MORL: a weight-conditioned multi-objective Q-network (Abels, Roijers, Lenaerts, Nowé &
Steckelmacher, ICML 2019, "Dynamic weights in multi-objective deep reinforcement learning").

The conditioned network Q(s, a, w) -> R^K takes the preference w (on the simplex) as input
and predicts the vector return of item a in user state s. It is trained on logged trajectories
(common.LoggedEnv) in the dynamic-weights regime of the paper: the active weight vector
changes every `weight_every` steps (a Dirichlet(1) draw); the agent acts epsilon-greedily on
w'Q; transitions go to a diverse experience replay (DER: when full, the transitions that add
least to the diversity of the stored reward vectors, by crowding distance, are dropped); and
each update regresses Q(s, a, w) on the vector target r + gamma Q'(s', a*, w),
a* = argmax_a' w'Q(s', a', w) (online network picks, target network values: double DQN),
for the active w and for a w drawn from the weights met so far (the paper's joint loss).
At evaluation w is static (config `weights`) and candidates are scored by w'Q(s, a, w).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.baselines import ItemPolicyEntry
from deepprl.baselines.common import (
    ItemEmbedding,
    LoggedEnv,
    MaskedGRU,
    Replay,
    SideFeatures,
    batch_to,
    check_positive,
    check_unit,
    choose,
    dirichlet,
    fifo,
    greedy_target,
    history_steps,
    module_device,
    reinitialise,
    static_weights,
)
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch
from deepprl.data.splits import Split
from deepprl.models.layers import mlp


@dataclass(frozen=True)
class MORLConfig:
    """Conditioned network with diverse experience replay (Abels et al. 2019)."""

    item_dim: int = 32
    """Item embedding size (id embedding + projected item features)."""
    hidden: int = 64
    """Hidden units of the GRU user state and of the Q-network."""
    gamma: float = 0.5
    """Discount of the vector return."""
    lr: float = 1e-3
    """Adam learning rate."""
    steps: int = 1000
    """Cap on environment-and-update steps."""
    epochs: float = 2.0
    """Acting passes over the training events: steps = min(steps, epochs * N / act_batch)."""
    batch_size: int = 64
    """Replayed transitions per update."""
    act_batch: int = 64
    """Logged events acted on per step (new transitions per step)."""
    buffer_size: int = 20000
    """Replay capacity."""
    warmup: int = 256
    """Transitions stored before updates start."""
    epsilon: float = 0.3
    """Share of uniformly random actions (epsilon-greedy on w'Q)."""
    target_every: int = 100
    """Steps between hard copies of the online network into the target network."""
    weight_every: int = 50
    """Steps between changes of the active weight vector (dynamic weights)."""
    diverse_replay: bool = True
    """DER eviction by crowding distance (False: first in, first out)."""
    max_candidates: int = 100
    """Cap on a user's training candidate set (seeded subsample); 0 = no cap."""
    weights: tuple[float, ...] = ()
    """Static evaluation weights w on the simplex; () = equal."""


def crowding_distance(points: torch.Tensor) -> torch.Tensor:
    """NSGA-II crowding distance of points [M, K]: per objective, the gap between a point's
    two neighbours in that objective over the objective's range, summed; the two extremes of
    each objective get inf. -> [M]."""
    M, K = points.shape
    dist = torch.zeros(M, dtype=points.dtype)
    if M <= 2:
        return torch.full((M,), float("inf"), dtype=points.dtype)
    for k in range(K):
        order = torch.sort(points[:, k], stable=True).indices
        v = points[order, k]
        span = v[-1] - v[0]
        gap = torch.zeros(M, dtype=points.dtype)
        if span > 0:
            gap[1:-1] = (v[2:] - v[:-2]) / span
        gap[0] = gap[-1] = float("inf")
        dist[order] += gap
    return dist


def diverse(reward: torch.Tensor, n: int) -> torch.Tensor:
    """DER eviction: keep the n transitions with the largest crowding distance of their
    reward vectors; among equals the newest (later rows) stay."""
    newest_first = torch.arange(reward.shape[0] - 1, -1, -1)
    dist = crowding_distance(reward.float()[newest_first])
    return newest_first[torch.sort(dist, descending=True, stable=True).indices[:n]]


class ConditionedQ(nn.Module):
    """Q(s, a, w) = V relu(W_s s + W_a a + W_w w + c) [B, C, K]: one hidden layer over the
    concatenation [s; a; w]; s = MLP([GRU over the history (item, log gap); user; context])."""

    def __init__(self, *, user_features: torch.Tensor, item_features: torch.Tensor,
                 context_features: int, n_objectives: int, history_length: int,
                 config: MORLConfig) -> None:
        super().__init__()
        check_positive(item_dim=config.item_dim, hidden=config.hidden)
        h = config.hidden
        self.history_length = history_length
        self.items = ItemEmbedding(item_features=item_features, dim=config.item_dim)
        self.gru = MaskedGRU(config.item_dim + 1, h)
        self.side = SideFeatures(user_features=user_features,
                                 context_features=context_features, dim=h // 2)
        self.state_net = mlp([h + self.side.out_dim, h], final_activation=True)
        # first layer over [s; a; w], split so that the state part is computed once per row
        self.q_state = nn.Linear(h, h)
        self.q_item = nn.Linear(config.item_dim, h, bias=False)
        self.q_weight = nn.Linear(n_objectives, h, bias=False)
        self.q_out = nn.Linear(h, n_objectives)
        self.weights: torch.Tensor  # static evaluation weights: not learnt, not saved
        self.register_buffer("weights", static_weights(config.weights, n_objectives),
                             persistent=False)

    def state(self, batch: Batch) -> torch.Tensor:
        """User state [B, H]."""
        h = self.gru(history_steps(self.items, batch), batch.hist_mask)
        return self.state_net(torch.cat([h, self.side(batch.user, batch.context)], dim=-1))

    def q(self, state: torch.Tensor, items: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """state [B, H], items [B, C], w [B, K] -> Q [B, C, K]."""
        z = self.q_state(state)[:, None] + self.q_item(self.items(items)) \
            + self.q_weight(w)[:, None]
        return self.q_out(torch.relu(z))

    def forward(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        batch = batch_to(batch, module_device(self))
        items = items.to(module_device(self))
        w = self.weights.expand(len(batch), -1)
        return (self.q(self.state(batch), items, w) * w[:, None]).sum(-1)  # [B, C]


def td_loss(net: ConditionedQ, target: ConditionedQ, batch: Batch, items: torch.Tensor,
            reward: torch.Tensor, done: torch.Tensor, next_batch: Batch,
            next_items: torch.Tensor, weights: list[torch.Tensor], gamma: float
            ) -> torch.Tensor:
    """Mean over weight sets of the vector TD error 1/2 |y_w - Q(s, a, w)|^2 (averaged over
    objectives and rows). items [B] the actions; reward [B, K]; next_items [B, C'] the next
    state's candidates; each weights entry is [B, K]."""
    s = net.state(batch)
    with torch.no_grad():
        s_next, s_next_t = net.state(next_batch), target.state(next_batch)
    valid = next_items > 0
    losses = []
    for w in weights:
        with torch.no_grad():
            select = (net.q(s_next, next_items, w) * w[:, None]).sum(-1)  # [B, C'] w'Q
            y = greedy_target(reward, done, gamma, select, target.q(s_next_t, next_items, w),
                              valid)  # [B, K]
        q = net.q(s, items[:, None], w)[:, 0]
        losses.append(0.5 * (q - y).pow(2).mean())
    return torch.stack(losses).mean()


def build(config: MORLConfig, data: Interactions, history_length: int) -> ConditionedQ:
    return ConditionedQ(user_features=torch.from_numpy(data.user_features),
                        item_features=torch.from_numpy(data.item_features),
                        context_features=data.context.shape[1], n_objectives=data.n_objectives,
                        history_length=history_length, config=config)


def fit(module: nn.Module, data: Interactions, split: Split, config: MORLConfig, k: int,
        seed: int) -> list[dict[str, float]]:
    """Dynamic-weights training on the logged trajectories (see the module docstring)."""
    if not isinstance(module, ConditionedQ):
        raise TypeError(f"morl fits a ConditionedQ, got {type(module).__name__}")
    check_positive(steps=config.steps, epochs=config.epochs, batch_size=config.batch_size,
                   act_batch=config.act_batch, target_every=config.target_every,
                   weight_every=config.weight_every, buffer_size=config.buffer_size)
    check_unit(gamma=config.gamma, epsilon=config.epsilon)
    reinitialise(module, seed)
    device, K = module_device(module), data.n_objectives
    env = LoggedEnv(data, split, history_length=module.history_length,
                    max_candidates=config.max_candidates, seed=seed)
    target = copy.deepcopy(module).requires_grad_(False)
    opt = torch.optim.Adam(module.parameters(), lr=config.lr, foreach=True)
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng([seed, 41])
    replay = Replay(config.buffer_size, K, evict=diverse if config.diverse_replay else fifo)
    seen: list[torch.Tensor] = []
    log: list[dict[str, float]] = []
    losses: list[float] = []
    module.train()
    n_steps = min(config.steps, max(1, int(np.ceil(config.epochs * len(env) / config.act_batch))))
    for step in range(n_steps):
        if step % config.weight_every == 0:
            seen.append(dirichlet(1, K, gen)[0])
        w = seen[-1].to(device)
        rewards = _act(module, env, replay, w, config, rng, gen)
        if len(replay) >= min(config.warmup, config.buffer_size):
            tr = replay.sample(config.batch_size, gen)
            rows, nrows = tr["row"].numpy(), tr["next_row"].numpy()
            past = torch.stack(seen)[torch.randint(len(seen), (len(rows),), generator=gen)]
            loss = td_loss(module, target, batch_to(env.batch(rows), device),
                           tr["item"].to(device), tr["reward"].to(device),
                           tr["done"].to(device), batch_to(env.batch(nrows), device),
                           torch.from_numpy(env.candidates(nrows)).to(device),
                           [w.expand(len(rows), -1), past.to(device)], config.gamma)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if (step + 1) % config.target_every == 0:
            target.load_state_dict(module.state_dict())
        if (step + 1) % 100 == 0 or step + 1 == n_steps:
            record = {"step": float(step + 1), "td_loss": float(np.mean(losses[-100:] or [0]))}
            record.update({f"reward_{n}": float(r) for n, r in
                           zip(data.objective_names, rewards, strict=True)})
            log.append(record)
    module.eval()
    return log


def _act(net: ConditionedQ, env: LoggedEnv, replay: Replay, w: torch.Tensor,
         config: MORLConfig, rng: np.random.Generator, gen: torch.Generator) -> np.ndarray:
    """Epsilon-greedy actions on w'Q at act_batch sampled events; stores the transitions and
    returns their mean reward vector [K]."""
    pos = rng.integers(len(env), size=config.act_batch)
    rows = env.steps.rows[pos]
    items = torch.from_numpy(env.candidates(rows))
    valid = items > 0
    device = module_device(net)
    with torch.no_grad():
        ww = w.expand(len(rows), -1)
        q = net.q(net.state(batch_to(env.batch(rows), device)), items.to(device), ww)
        col = choose((q * ww[:, None]).sum(-1).cpu(), valid)
    explore = torch.rand(len(rows), generator=gen) < config.epsilon
    col = torch.where(explore, choose(torch.rand(valid.shape, generator=gen), valid), col)
    chosen = items[torch.arange(len(rows)), col].numpy()
    objectives, _ = env.outcome(rows, chosen)
    ok = np.isfinite(objectives).all(1) & (chosen > 0)
    replay.add(row=torch.from_numpy(rows[ok]), item=torch.from_numpy(chosen[ok]),
               reward=torch.from_numpy(objectives[ok]),
               next_row=torch.from_numpy(env.steps.next_row[pos][ok]),
               done=torch.from_numpy(env.steps.done[pos][ok].astype(np.float32)))
    return objectives[ok].mean(0) if ok.any() else np.zeros(objectives.shape[1])


ENTRY = ItemPolicyEntry(
    config=MORLConfig, build=build, fit=fit,
    description="MORL (Abels et al. 2019): weight-conditioned vector Q-network with diverse "
                "experience replay, dynamic weights during training, static w at evaluation")
