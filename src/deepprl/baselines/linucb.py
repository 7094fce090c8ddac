"""MO-LinUCB: a multi-objective contextual linear bandit (Mehrotra, Xue & Lalmas, KDD 2020).

One ridge regression per objective k over a context vector x(u, i, t):
    A = lambda I + sum_t x_t x_t',  b_k = sum_t y_tk x_t,  theta_k = A^-1 b_k,
    UCB_k(x) = theta_k' x + beta * sqrt(x' A^-1 x),
aggregated across objectives by the generalised Gini index (GGI, the paper's scalarisation:
the UCBs sorted ascending, weighted by w_1 >= w_2 >= ...) or a static weighted sum.
Every logged event carries all K objectives, so the K design matrices A_k are one A.

x(u, i, t) = [vec(a (x) b); e_i] with a = [1; user features; event context] and
b = [1; item features]: the outer product holds an intercept, the user, context and item
main effects and every user-item and context-item interaction; e_i (optional) is a one-hot
item indicator (a per-item intercept). The Kronecker structure and the diagonal item block
keep the UCB width cheap: A^-1 comes from a Schur complement over the small dense block, and
x' A^-1 x is contracted with a first, so no [B, C, d] design tensor is ever formed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprl.baselines import ItemPolicyEntry, training_events
from deepprl.baselines.common import batch_to, check_positive, module_device, static_weights
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import Batch
from deepprl.data.splits import Split


@dataclass(frozen=True)
class MOLinUCBConfig:
    """Multi-objective LinUCB with GGI aggregation (Mehrotra et al. 2020)."""

    beta: float = 0.1
    """Exploration bonus: UCB_k = theta_k'x + beta * sqrt(x'A^-1 x), kept on at evaluation."""
    ridge: float = 1.0
    """lambda in A = lambda I + sum x x' (ridge regularisation; LinUCB's identity prior)."""
    aggregation: str = "ggi"
    """ggi (generalised Gini of the per-objective UCBs, the paper's) or weighted (sum)."""
    weights: tuple[float, ...] = ()
    """Aggregation weights; () = default (ggi: 1, 1/2, 1/4, ...; weighted: equal).
    For ggi they are sorted decreasing and applied to the ascending UCBs."""
    item_bias: bool = True
    """Append a one-hot item indicator to x: a per-item intercept for every objective."""
    max_events: int = 0
    """Cap on training events (a seeded subsample, kept in time order); 0 = all."""
    chunk_size: int = 4096
    """Events per sequential update; the model of the events so far predicts each chunk
    before it is added (progressive validation in the log)."""


def ggi(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Generalised Gini index G_w(v) = sum_d w_d v_(d): values [..., K] sorted ascending,
    weights [K] non-increasing (the worst objective gets the largest weight) -> [...]."""
    return (torch.sort(values, dim=-1).values * weights).sum(-1)


def ggi_weights(weights: tuple[float, ...], n_objectives: int) -> torch.Tensor:
    """Non-increasing GGI weights on the simplex; () gives w_d proportional to 2^-(d-1)."""
    w = torch.tensor(weights, dtype=torch.float64) if weights else \
        0.5 ** torch.arange(n_objectives, dtype=torch.float64)
    if len(w) != n_objectives or (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be {n_objectives} non-negative numbers, not all zero; "
                         f"got {weights}")
    return torch.sort(w / w.sum(), descending=True).values


def linucb_scores(x: torch.Tensor, a_inv: torch.Tensor, theta: torch.Tensor, beta: float
                  ) -> torch.Tensor:
    """UCB per objective from explicit features: x [..., d], A^-1 [d, d], theta [K, d]
    -> theta_k'x + beta * sqrt(x'A^-1 x) [..., K]."""
    width = torch.einsum("...i,ij,...j->...", x, a_inv, x).clamp(min=0).sqrt()
    return x @ theta.T + beta * width.unsqueeze(-1)


class MOLinUCB(nn.Module):
    """Sufficient statistics (A, b) in float64 buffers; scores = aggregate(UCB) [B, C].

    A = [[A11, A12], [A12', diag(a22)]] over x = [vec(a (x) b) (D1); e_i (I)]."""

    def __init__(self, *, user_features: torch.Tensor, item_features: torch.Tensor,
                 context_features: int, n_objectives: int, config: MOLinUCBConfig) -> None:
        super().__init__()
        if config.aggregation not in ("ggi", "weighted"):
            raise ValueError(f"aggregation must be 'ggi' or 'weighted', got "
                             f"{config.aggregation!r}")
        check_positive(ridge=config.ridge, chunk_size=config.chunk_size)
        if config.beta < 0:
            raise ValueError(f"beta must be >= 0, got {config.beta}")
        self.beta, self.ridge, self.aggregation = config.beta, config.ridge, config.aggregation
        self.user_table: torch.Tensor
        self.item_table: torch.Tensor
        self.register_buffer("user_table", user_features.double())  # [U + 1, Fu]
        self.register_buffer("item_table", item_features.double())  # [I + 1, Fi]
        self.da = 1 + user_features.shape[1] + context_features
        self.db = 1 + item_features.shape[1]
        d1, n_bias = self.da * self.db, item_features.shape[0] - 1 if config.item_bias else 0
        self.A11: torch.Tensor
        self.A12: torch.Tensor
        self.a22: torch.Tensor
        self.b1: torch.Tensor
        self.b2: torch.Tensor
        self.register_buffer("A11", torch.zeros(d1, d1, dtype=torch.float64))
        self.register_buffer("A12", torch.zeros(d1, n_bias, dtype=torch.float64))
        self.register_buffer("a22", torch.zeros(n_bias, dtype=torch.float64))
        self.register_buffer("b1", torch.zeros(n_objectives, d1, dtype=torch.float64))
        self.register_buffer("b2", torch.zeros(n_objectives, n_bias, dtype=torch.float64))
        self.weights: torch.Tensor  # not learnt: rebuild with other weights, load the state
        w = ggi_weights(config.weights, n_objectives) if config.aggregation == "ggi" else \
            _simplex(config.weights, n_objectives)
        self.register_buffer("weights", w, persistent=False)
        self._solved: tuple[tuple[int, ...], tuple[torch.Tensor, ...]] | None = None
        self.reset_parameters()

    @property
    def item_bias(self) -> bool:
        return self.a22.shape[0] > 0

    def reset_parameters(self) -> None:
        """Back to the prior: A = lambda I, b = 0."""
        with torch.no_grad():
            self.A11.copy_(self.ridge * torch.eye(self.A11.shape[0], dtype=torch.float64))
            self.A12.zero_()
            self.a22.fill_(self.ridge)
            self.b1.zero_()
            self.b2.zero_()

    # -- features ---------------------------------------------------------------------------
    def user_part(self, users: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """a = [1; user features; context]: [B] and [B, Fc] -> [B, Da]."""
        ones = torch.ones(users.shape[0], 1, dtype=torch.float64, device=users.device)
        return torch.cat([ones, self.user_table[users], context.double()], dim=-1)

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """b = [1; item features]: items [...] -> [..., Db]."""
        ones = torch.ones(*items.shape, 1, dtype=torch.float64, device=items.device)
        return torch.cat([ones, self.item_table[items]], dim=-1)

    def design(self, users: torch.Tensor, context: torch.Tensor, items: torch.Tensor
               ) -> torch.Tensor:
        """The explicit x(u, i, t) [B, C, d] (for tests and inspection; scoring avoids it)."""
        a, b = self.user_part(users, context), self.item_part(items)
        x = (a[:, None, :, None] * b[:, :, None, :]).flatten(2)  # [B, C, Da * Db]
        if self.item_bias:
            onehot = nn.functional.one_hot((items - 1).clamp(min=0), self.a22.shape[0])
            x = torch.cat([x, onehot.double() * (items > 0).unsqueeze(-1)], dim=-1)
        return x

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full A [d, d] and b [K, d] (for tests and inspection)."""
        top = torch.cat([self.A11, self.A12], dim=1)
        bottom = torch.cat([self.A12.T, torch.diag(self.a22)], dim=1)
        return torch.cat([top, bottom]), torch.cat([self.b1, self.b2], dim=1)

    # -- learning ---------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, a: torch.Tensor, items: torch.Tensor, y: torch.Tensor) -> None:
        """A += sum x x', b_k += sum y_k x over n events: a [n, Da], items [n], y [n, K]."""
        x1 = (a[:, :, None] * self.item_part(items)[:, None, :]).flatten(1)  # [n, D1]
        y = y.double()
        self.A11.add_(x1.T @ x1)
        self.b1.add_(y.T @ x1)
        if self.item_bias:
            col = items - 1
            self.A12.index_add_(1, col, x1.T)
            self.a22.index_add_(0, col, torch.ones_like(col, dtype=torch.float64))
            self.b2.index_add_(1, col, y.T)

    def solved(self) -> tuple[torch.Tensor, ...]:
        """(M11, M12, diag M22, theta1, theta2) of A^-1 and theta = A^-1 b, by the Schur
        complement S = A11 - A12 D^-1 A12' (D = diag a22); cached until the stats change."""
        stats = (self.A11, self.A12, self.a22, self.b1, self.b2)
        key = tuple(v for t in stats for v in (t.data_ptr(), t._version))
        if self._solved is None or self._solved[0] != key:
            p = self.A12 / self.a22  # [D1, I] = A12 D^-1
            chol = torch.linalg.cholesky(self.A11 - p @ self.A12.T)
            m11 = torch.cholesky_inverse(chol)
            theta1 = torch.cholesky_solve((self.b1 - self.b2 @ p.T).T, chol).T  # [K, D1]
            theta2 = (self.b2 - theta1 @ self.A12) / self.a22  # [K, I]
            mp = m11 @ p
            m22 = 1.0 / self.a22 + (mp * p).sum(0)
            self._solved = (key, (m11, -mp, m22, theta1, theta2))
        return self._solved[1]

    # -- scoring ----------------------------------------------------------------------------
    def ucb(self, users: torch.Tensor, context: torch.Tensor, items: torch.Tensor,
            beta: float | None = None) -> torch.Tensor:
        """Per-objective UCB [B, C, K] (beta = None: the configured bonus)."""
        beta = self.beta if beta is None else beta
        m11, m12, m22, theta1, theta2 = self.solved()
        da, db, K = self.da, self.db, theta1.shape[0]
        a, b = self.user_part(users, context), self.item_part(items)  # [B, Da], [B, C, Db]
        mean = torch.einsum("bkq,bcq->bck", torch.einsum("bp,kpq->bkq", a,
                                                         theta1.reshape(K, da, db)), b)
        col = (items - 1).clamp(min=0)
        if self.item_bias:
            mean = mean + theta2[:, col].permute(1, 2, 0)
        if beta == 0:
            return mean.float()
        t = (a @ m11.reshape(da, -1)).view(-1, db, da, db)  # sum_p a_p M11[(p, q), (r, s)]
        n = torch.einsum("bqrs,br->bqs", t, a)  # [B, Db, Db]
        quad = torch.einsum("bcq,bqs,bcs->bc", b, n, b)  # (a (x) b)' M11 (a (x) b)
        if self.item_bias:
            g = (a @ m12.reshape(da, -1)).view(-1, db, m12.shape[1])  # [B, Db, I]
            g = g.gather(2, col.unsqueeze(1).expand(-1, db, -1))  # [B, Db, C]
            quad = quad + 2.0 * torch.einsum("bqc,bcq->bc", g, b) + m22[col]
        return (mean + beta * quad.clamp(min=0).sqrt().unsqueeze(-1)).float()

    def aggregate(self, values: torch.Tensor) -> torch.Tensor:
        """[..., K] -> [...]: GGI or the weighted sum."""
        return self._aggregate(values, self.weights)

    def aggregate_with(self, values: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
        """aggregate() as the module rebuilt with other static `weights` would: tuning and
        frontier sweeps score the per-objective UCBs once and only re-aggregate them."""
        k = values.shape[-1]
        w = ggi_weights(tuple(weights), k) if self.aggregation == "ggi" else \
            _simplex(tuple(weights), k)
        return self._aggregate(values, w)

    def _aggregate(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w = weights.to(values.dtype)
        return ggi(values, w) if self.aggregation == "ggi" else values @ w

    def objective_scores(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        """Per-objective UCB [B, C, K] of candidates items [B, C]."""
        batch = batch_to(batch, module_device(self))
        items = items.to(module_device(self))
        out = [self.ucb(batch.user[s], batch.context[s], items[s])
               for s in _row_chunks(len(batch), 128)]  # bounded [rows, Db, I] temporaries
        return torch.cat(out) if out else \
            items.new_zeros((*items.shape, self.b1.shape[0]), dtype=torch.float32)

    def forward(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.objective_scores(batch, items))


def _row_chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _simplex(weights: tuple[float, ...], k: int) -> torch.Tensor:
    return static_weights(weights, k).double()


def build(config: MOLinUCBConfig, data: Interactions, history_length: int) -> MOLinUCB:
    """The bandit at its prior (it reads no history: history_length is unused)."""
    return MOLinUCB(user_features=torch.from_numpy(data.user_features),
                    item_features=torch.from_numpy(data.item_features),
                    context_features=data.context.shape[1], n_objectives=data.n_objectives,
                    config=config)


def fit(module: nn.Module, data: Interactions, split: Split, config: MOLinUCBConfig, k: int,
        seed: int) -> list[dict[str, float]]:
    """Sequential ridge updates over the training events in time order, with the logged item's
    objectives; each chunk is first predicted by the model so far (progressive MAE)."""
    if not isinstance(module, MOLinUCB):
        raise TypeError(f"mo-linucb fits a MOLinUCB, got {type(module).__name__}")
    rows = training_events(split)
    rows = rows[np.argsort(data.time[rows], kind="stable")]  # arrival order of the bandit
    rows = rows[np.isfinite(data.objectives[rows]).all(1)]  # A is shared: all K observed
    if config.max_events and len(rows) > config.max_events:
        keep = np.random.default_rng([seed, 31]).choice(len(rows), config.max_events,
                                                        replace=False)
        rows = rows[np.sort(keep)]
    module.reset_parameters()
    device = module_device(module)
    log: list[dict[str, float]] = []
    for start in range(0, len(rows), config.chunk_size):
        ev = rows[start : start + config.chunk_size]
        users = torch.from_numpy(data.user[ev]).to(device)
        context = torch.from_numpy(data.context[ev]).to(device)
        items = torch.from_numpy(data.item[ev]).to(device)
        y = torch.from_numpy(data.objectives[ev]).to(device)
        record: dict[str, float] = {"events": float(start + len(ev))}
        if start:
            with torch.no_grad():
                pred = module.ucb(users, context, items[:, None], beta=0.0)[:, 0]  # [n, K]
            err = (pred - y).abs().mean(0)
            record.update({f"mae_{name}": float(e) for name, e in
                           zip(data.objective_names, err, strict=True)})
        module.update(module.user_part(users, context), items, y)
        log.append(record)
    return log


ENTRY = ItemPolicyEntry(
    config=MOLinUCBConfig, build=build, fit=fit,
    description="MO-LinUCB (Mehrotra et al. 2020): per-objective ridge UCB over user, "
                "context and item features and their interactions, aggregated by the "
                "generalised Gini index")
