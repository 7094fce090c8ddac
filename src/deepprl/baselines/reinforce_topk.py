"""Top-K off-policy corrected REINFORCE (Chen, Beutel, Covington, Jain, Belletti & Chi,
WSDM 2019, "Top-K off-policy correction for a REINFORCE recommender system").

A GRU over the history's item embeddings (with the log gaps; user features and event context
join the state) gives the user state s. Two softmax heads over the whole catalogue:
pi(a|s) (the policy) and beta(a|s) (the behaviour policy, fitted by maximum likelihood on
the logged actions with the gradient blocked into the state, as in the paper). The policy
follows the corrected gradient on logged trajectories:
    sum_t min(pi/beta, c) * lambda_K(s_t, a_t) * R_t * grad log pi(a_t|s_t),
    lambda_K(s, a) = K (1 - pi(a|s))^(K - 1),   R_t = sum_{t' >= t} gamma^(t'-t) r_t',
with r the dataset's reward of the logged event and the return taken over the user's
training-period trajectory. Scores are the policy logits of the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.baselines import ItemPolicyEntry
from deepprl.baselines.common import (
    ItemEmbedding,
    MaskedGRU,
    SideFeatures,
    batch_to,
    check_positive,
    check_unit,
    history_steps,
    logged_steps,
    module_device,
    reinitialise,
)
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch, history_index, make_batch
from deepprl.data.splits import Split
from deepprl.models.layers import mlp


@dataclass(frozen=True)
class ReinforceTopKConfig:
    """REINFORCE with the top-K off-policy correction (Chen et al. 2019)."""

    item_dim: int = 32
    """Input item embedding size (id embedding + projected item features)."""
    hidden: int = 64
    """GRU units and user-state size (the softmax embeddings' size)."""
    gamma: float = 0.5
    """Discount of the return over the user's logged trajectory."""
    lr: float = 1e-3
    """Adam learning rate."""
    steps: int = 1500
    """Cap on gradient steps."""
    epochs: float = 3.0
    """Passes over the training events: steps = min(steps, epochs * N / batch_size)."""
    batch_size: int = 256
    """Logged events per step."""
    weight_cap: float = 10.0
    """c: the importance weight pi/beta is capped at c."""
    top_k: int = 0
    """K of the top-K correction; 0 = the evaluation's k."""


def topk_correction(pi: torch.Tensor, k: int) -> torch.Tensor:
    """lambda_K = K (1 - pi)^(K - 1), elementwise: d alpha / d pi for
    alpha = 1 - (1 - pi)^K, the chance that a is in a top-K of K independent draws from pi."""
    return k * (1.0 - pi).pow(k - 1)


def capped_importance(pi: torch.Tensor, beta: torch.Tensor, cap: float) -> torch.Tensor:
    """min(pi / beta, c), elementwise."""
    return torch.clamp(pi / beta, max=cap)


def discounted_returns(reward: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """R_t = r_t + gamma * R_{t+1} within each trajectory (done [E] ends one): [E]."""
    out = np.zeros(len(reward), dtype=np.float64)
    running = 0.0
    for t in range(len(reward) - 1, -1, -1):
        running = reward[t] + (0.0 if done[t] else gamma * running)
        out[t] = running
    return out


class TopKReinforce(nn.Module):
    """State encoder + policy head pi + behaviour head beta over the catalogue."""

    def __init__(self, *, user_features: torch.Tensor, item_features: torch.Tensor,
                 context_features: int, history_length: int, config: ReinforceTopKConfig
                 ) -> None:
        super().__init__()
        check_positive(item_dim=config.item_dim, hidden=config.hidden)
        h, n = config.hidden, item_features.shape[0]  # n = I + 1 (index 0 = padding)
        self.history_length = history_length
        self.items = ItemEmbedding(item_features=item_features, dim=config.item_dim)
        self.gru = MaskedGRU(config.item_dim + 1, h)
        self.side = SideFeatures(user_features=user_features,
                                 context_features=context_features, dim=h // 2)
        self.state_net = mlp([h + self.side.out_dim, h], "tanh", final_activation=True)
        self.pi_head = nn.Linear(h, n)  # row a: the policy's softmax embedding of item a
        self.beta_head = nn.Linear(h, n)  # the behaviour policy's own softmax embeddings

    def state(self, batch: Batch) -> torch.Tensor:
        """User state s [B, H]."""
        h = self.gru(history_steps(self.items, batch), batch.hist_mask)
        return self.state_net(torch.cat([h, self.side(batch.user, batch.context)], dim=-1))

    def log_probs(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(.|s) and log beta(.|s) [B, I + 1] over the catalogue (padding excluded);
        beta sees the state through a gradient block."""
        pad = torch.zeros(self.pi_head.out_features, dtype=torch.bool, device=state.device)
        pad[0] = True
        pi = torch.log_softmax(self.pi_head(state).masked_fill(pad, float("-inf")), -1)
        beta = torch.log_softmax(self.beta_head(state.detach()).masked_fill(pad, float("-inf")),
                                 -1)
        return pi, beta

    def forward(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        batch = batch_to(batch, module_device(self))
        items = items.to(module_device(self))
        s = self.state(batch)  # [B, H]
        return (self.pi_head.weight[items] * s[:, None]).sum(-1) + self.pi_head.bias[items]


def reinforce_loss(net: TopKReinforce, batch: Batch, actions: torch.Tensor,
                   returns: torch.Tensor, *, k: int, cap: float
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Corrected policy loss + behaviour log-likelihood loss; actions, returns [B]."""
    log_pi, log_beta = net.log_probs(net.state(batch))
    lp = log_pi.gather(1, actions[:, None])[:, 0]
    lb = log_beta.gather(1, actions[:, None])[:, 0]
    with torch.no_grad():
        pi = lp.exp()
        ratio = capped_importance(pi, lb.exp(), cap)
        weight = ratio * topk_correction(pi, k) * returns
    policy = -(weight * lp).mean()
    behaviour = -lb.mean()
    return policy + behaviour, {"policy_loss": float(policy.detach()),
                                "behaviour_nll": float(behaviour.detach()),
                                "mean_weight": float(ratio.mean())}


def build(config: ReinforceTopKConfig, data: Interactions, history_length: int
          ) -> TopKReinforce:
    return TopKReinforce(user_features=torch.from_numpy(data.user_features),
                         item_features=torch.from_numpy(data.item_features),
                         context_features=data.context.shape[1], history_length=history_length,
                         config=config)


def fit(module: nn.Module, data: Interactions, split: Split, config: ReinforceTopKConfig,
        k: int, seed: int) -> list[dict[str, float]]:
    """Corrected REINFORCE on random minibatches of logged training events."""
    if not isinstance(module, TopKReinforce):
        raise TypeError(f"reinforce-topk fits a TopKReinforce, got {type(module).__name__}")
    check_positive(steps=config.steps, epochs=config.epochs, batch_size=config.batch_size,
                   weight_cap=config.weight_cap, k=config.top_k or k)
    check_unit(gamma=config.gamma)
    reinitialise(module, seed)
    device = module_device(module)
    steps = logged_steps(data, split)
    if len(steps.rows) == 0:
        raise ValueError("the split has no training events: nothing to learn from")
    returns = torch.from_numpy(discounted_returns(data.reward[steps.rows], steps.done,
                                                  config.gamma).astype(np.float32))
    hist = history_index(data, module.history_length)
    opt = torch.optim.Adam(module.parameters(), lr=config.lr, foreach=True)
    rng = np.random.default_rng([seed, 47])
    n_steps = min(config.steps,
                  max(1, int(np.ceil(config.epochs * len(steps.rows) / config.batch_size))))
    log: list[dict[str, float]] = []
    module.train()
    for step in range(n_steps):
        pos = rng.integers(len(steps.rows), size=min(config.batch_size, len(steps.rows)))
        rows = steps.rows[pos]
        batch = batch_to(make_batch(data, hist[rows], rows), device)
        loss, stats = reinforce_loss(module, batch, torch.from_numpy(data.item[rows]).to(device),
                                     returns[pos].to(device), k=config.top_k or k,
                                     cap=config.weight_cap)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0 or step + 1 == n_steps:
            log.append({"step": float(step + 1), **stats})
    module.eval()
    return log


ENTRY = ItemPolicyEntry(
    config=ReinforceTopKConfig, build=build, fit=fit,
    description="REINFORCE with top-K off-policy correction (Chen et al. 2019): GRU state, "
                "softmax policy over the catalogue, learned behaviour policy, capped "
                "importance weights, discounted logged returns")
