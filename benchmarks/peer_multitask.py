"""Peer check: our Shared-Bottom, MMoE and PLE predictors against torch-rechub's
SharedBottom, MMOE and PLE, trained side by side on identical MovieLens-100K inputs.

    .venv/bin/pip install torch-rechub      # benchmark only: not a project dependency
    .venv/bin/python benchmarks/peer_multitask.py [--epochs 5] [--seeds 0 1 2] [--threads 1]

Inputs (one row per event, no sequence): user id and item id embeddings (16 each, both
sides initialised N(0, 1e-4) like torch-rechub's features), the user features, the item
features, and the event's context (clock context + the features of the user's previous item,
so that "consistency" is learnable). torch-rechub reads them as SparseFeature / vector
DenseFeature; our predictor reads user = [user id emb; user features; context] and
item = [item id emb; item features], i.e. the same vector, split as our PredictorModel does.
Objectives: consistency and recency, sigmoid outputs on both sides (torch-rechub task type
"classification" = sigmoid), loss Σ_k |ŷ_k − y_k| (paper eq. 2) on both sides, Adam
lr 1e-3, batch 256, the same temporal split (20 % test) and batch order.

Three sides per model: "ours" (our registered predictor with its defaults, as the papers
describe it: no BatchNorm), "ours_bn" (the same with batch_norm=True: a BatchNorm before
every ReLU and gate softmax, the block layout of torch-rechub's MLP) and "peer"
(torch-rechub). They train in lockstep, one step each on the same batch, the order rotating
from step to step, so their records/s see the same machine load.
Prints one JSON object: per model and side, test MAE per objective and AUC of
consistency > 0 (scored by ŷ_consistency), means over seeds and per seed, records/s, and
each of our sides minus the peer.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from deepprl.data.interactions import Interactions
from deepprl.data.movielens import load_movielens_100k
from deepprl.data.splits import temporal_holdout
from deepprl.models.predictors import PREDICTORS
from deepprl.train.stage1 import prediction_loss

EMBED, HIDDEN, TOWER, EXPERTS = 16, 64, 32, 4
PLE_LEVELS, PLE_SPECIFIC, PLE_SHARED = 2, 1, 2
MODELS = {"shared-bottom": "SharedBottom", "mmoe": "MMOE", "ple": "PLE"}


def tabular_features(data: Interactions) -> dict[str, torch.Tensor]:
    """Per-event inputs both sides consume: ids, user/item features, context."""
    n = data.n_events
    has_prev = np.r_[False, data.user[1:] == data.user[:-1]]
    prev = np.where(has_prev, np.r_[0, data.item[:-1]], 0)
    context = np.concatenate([data.context, data.item_features[prev]], axis=1)
    arrays = {"user_id": data.user, "item_id": data.item,
              "user_dense": data.user_features[data.user],
              "item_dense": data.item_features[data.item], "context": context}
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    for k in ("user_dense", "item_dense", "context"):
        out[k] = out[k].float()
    assert all(len(v) == n for v in out.values())
    return out


class OursTabular(nn.Module):
    """Id embeddings + one of our registered predictors, on torch-rechub's input layout."""

    def __init__(self, name: str, *, n_users: int, n_items: int, widths: dict[str, int],
                 n_objectives: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.user_id = nn.Embedding(n_users + 1, EMBED)
        self.item_id = nn.Embedding(n_items + 1, EMBED)
        for emb in (self.user_id, self.item_id):
            nn.init.normal_(emb.weight, 0.0, 1e-4)  # torch-rechub's RandomNormal(0, 1e-4)
        extra: dict[str, int | bool] = {"batch_norm": batch_norm}
        if name == "mmoe":
            extra["n_experts"] = EXPERTS
        elif name == "ple":
            extra.update(n_levels=PLE_LEVELS, n_specific=PLE_SPECIFIC, n_shared=PLE_SHARED)
        self.predictor = PREDICTORS[name][0](
            user_dim=EMBED + widths["user_dense"] + widths["context"],
            item_dim=EMBED + widths["item_dense"], n_objectives=n_objectives, hidden=HIDDEN,
            tower_hidden=TOWER, objective_embedding_dim=16, similarity="dot", **extra)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        user = torch.cat([self.user_id(x["user_id"]), x["user_dense"], x["context"]], dim=-1)
        item = torch.cat([self.item_id(x["item_id"]), x["item_dense"]], dim=-1)
        return self.predictor(user, item[:, None])[:, 0]  # [B, K]


def peer_model(name: str, *, n_users: int, n_items: int, widths: dict[str, int],
               n_objectives: int) -> nn.Module:
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE, PLE, SharedBottom

    # fresh feature objects: torch-rechub caches each feature's embedding table on it
    features = [SparseFeature("user_id", n_users + 1, EMBED),
                SparseFeature("item_id", n_items + 1, EMBED),
                *(DenseFeature(k, embed_dim=w) for k, w in widths.items())]
    tasks = ["classification"] * n_objectives  # sigmoid outputs
    towers = [{"dims": [TOWER]} for _ in range(n_objectives)]
    if name == "shared-bottom":
        return SharedBottom(features, tasks, bottom_params={"dims": [HIDDEN]},
                            tower_params_list=towers)
    if name == "mmoe":
        return MMOE(features, tasks, n_expert=EXPERTS, expert_params={"dims": [HIDDEN]},
                    tower_params_list=towers)
    return PLE(features, tasks, n_level=PLE_LEVELS, n_expert_specific=PLE_SPECIFIC,
               n_expert_shared=PLE_SHARED, expert_params={"dims": [HIDDEN]},
               tower_params_list=towers)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged)."""
    pos = label.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def evaluate(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, names: tuple[str, ...]
             ) -> dict[str, float]:
    model.eval()
    y_hat = torch.cat([model({k: v[lo : lo + 4096] for k, v in x.items()})
                       for lo in range(0, len(y), 4096)])
    mae = (y_hat - y).abs().mean(0)
    out = {f"mae_{n}": float(v) for n, v in zip(names, mae, strict=True)}
    out["auc_consistency_pos"] = auc(y_hat[:, 0].numpy(), (y[:, 0] > 0).numpy())
    return out


SIDES = ("ours", "ours_bn", "peer")


def build_side(side: str, name: str, build: dict[str, object]) -> nn.Module:
    if side == "peer":
        return peer_model(name, **build)  # type: ignore[arg-type]
    return OursTabular(name, batch_norm=side == "ours_bn", **build)  # type: ignore[arg-type]


def train_sides(name: str, seed: int, epochs: int, x: dict[str, torch.Tensor], y: torch.Tensor,
                train: np.ndarray, build: dict[str, object]
                ) -> dict[str, tuple[nn.Module, float]]:
    """Train every side in lockstep on the same batches (the order of the sides rotates
    from step to step); returns each side's model and its seconds in training steps."""
    models = {}
    for side in SIDES:
        torch.manual_seed(seed)
        models[side] = build_side(side, name, build)
    optims = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    rng = np.random.default_rng(seed)
    step = 0
    for _ in range(epochs):
        for m in models.values():
            m.train()
        order = torch.from_numpy(rng.permutation(train))
        for lo in range(0, len(order), 256):
            idx = order[lo : lo + 256]
            step += 1
            for i in range(len(SIDES)):
                side = SIDES[(i + step) % len(SIDES)]
                start = time.perf_counter()
                batch = {k: v[idx] for k, v in x.items()}
                loss = prediction_loss(models[side](batch), y[idx], "l1")
                optims[side].zero_grad()
                loss.backward()
                optims[side].step()
                seconds[side] += time.perf_counter() - start
    return {side: (models[side], seconds[side]) for side in SIDES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_movielens_100k()
    split = temporal_holdout(data, test_fraction=0.2)
    x = tabular_features(data)
    y = torch.from_numpy(data.objectives).float()
    train, test = np.flatnonzero(split.train), np.flatnonzero(split.test)
    x_test = {k: v[test] for k, v in x.items()}
    widths = {k: int(x[k].shape[1]) for k in ("user_dense", "item_dense", "context")}
    build = {"n_users": data.n_users, "n_items": data.n_items, "widths": widths,
             "n_objectives": data.n_objectives}

    results: dict[str, dict] = {}
    for name in args.models:
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        secs = dict.fromkeys(SIDES, 0.0)
        for seed in args.seeds:
            trained = train_sides(name, seed, args.epochs, x, y, train, build)
            for side, (model, seconds) in trained.items():
                secs[side] += seconds
                runs[side].append(evaluate(model, x_test, y[test], data.objective_names))
        records = len(train) * args.epochs * len(args.seeds)
        entry: dict[str, Any] = {}
        for side in SIDES:
            mean = {k: float(np.mean([r[k] for r in runs[side]])) for k in runs[side][0]}
            entry[side] = {**mean, "records_per_s": records / secs[side], "per_seed": runs[side]}
        metrics = [k for k in entry["peer"] if k.startswith(("mae_", "auc_"))]
        for side in ("ours", "ours_bn"):
            diff = {k: entry[side][k] - entry["peer"][k] for k in metrics}
            entry[f"{side}_minus_peer"] = diff
            entry[f"{side}_within_0.01"] = all(abs(v) <= 0.01 for v in diff.values())
            entry[f"{side}_speedup"] = entry[side]["records_per_s"] / entry["peer"]["records_per_s"]
        entry["peer_class"] = f"torch_rechub.models.multi_task.{MODELS[name]}"
        results[name] = entry

    print(json.dumps({
        "dataset": "movielens-100k", "split": "temporal_holdout(test_fraction=0.2)",
        "n_train": len(train), "n_test": len(test), "epochs": args.epochs,
        "seeds": args.seeds, "batch_size": 256, "optimizer": "Adam(lr=1e-3)", "loss": "l1",
        "threads": args.threads, "input_widths": {"id_embeddings": 2 * EMBED, **widths},
        "torch": torch.__version__, "torch_rechub": version("torch-rechub"),
        "results": results}, indent=2))


if __name__ == "__main__":
    main()
