"""Save and load a run: weights (safetensors), config, schema, ids and package version.

Loading never unpickles: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepprl import __version__
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig, build
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.splits import Split, make_split
from deepprl.models.network import DataShape, PredictorModel
from deepprl.policy.weights import Actor, FixedWeights, GridQPolicy
from deepprl.recommender import ItemRanker, Recommender

_SCHEMA_KEYS = {"deepprl_version", "shape", "objectives", "user_ids", "item_ids",
                "data_fingerprint"}
MODEL_FILE, ACTOR_FILE, CONFIG_FILE, SCHEMA_FILE = (
    "model.safetensors", "actor.safetensors", "config.json", "schema.json")


class RunError(ValueError):
    """A run directory that is missing, corrupt or incompatible."""


def run_split(data: Interactions, config: RunConfig) -> Split:
    """The train/test split of a run, as its config says (the validation windows chosen
    from the data by deepprl.data.splits.choose_split)."""
    t = config.train
    return make_split(data, kind=t.split, test_fraction=t.test_fraction,
                      valid_fraction=t.valid_fraction, folds=t.folds, fold=t.fold,
                      seed=config.seed, validation=t.validation, k=config.eval.k)


def data_shape(data: Interactions) -> DataShape:
    return DataShape(n_users=data.n_users, n_items=data.n_items,
                     n_objectives=data.n_objectives,
                     user_features=data.user_features.shape[1],
                     item_features=data.item_features.shape[1],
                     context_features=data.context.shape[1])


def build_model(config: RunConfig, data: Interactions) -> PredictorModel:
    return PredictorModel(config=config.model, shape=data_shape(data),
                          user_features=torch.from_numpy(data.user_features),
                          item_features=torch.from_numpy(data.item_features))


def build_actor(config: RunConfig, model: PredictorModel, data: Interactions) -> Actor:
    return Actor(state_dim=model.state_dim, context_dim=data.context.shape[1],
                 n_objectives=data.n_objectives, hidden=config.policy.hidden,
                 layers=config.policy.layers, use_context=config.policy.use_context)


def build_policy(config: RunConfig, model: PredictorModel, data: Interactions) -> nn.Module:
    """The acting weight policy a run's algorithm learns (its weights come from training
    or from the run's policy file)."""
    p = config.policy
    if p.algorithm in ("ddpg", "reinforce"):
        return build_actor(config, model, data)
    if p.algorithm == "dqn":
        return GridQPolicy(state_dim=model.state_dim, context_dim=data.context.shape[1],
                           n_objectives=data.n_objectives, hidden=p.hidden, layers=p.layers,
                           steps=p.grid_steps, use_context=p.use_context)
    if p.algorithm == "static":
        return FixedWeights.equal(data.n_objectives)
    raise ValueError(f"unknown policy.algorithm {p.algorithm!r}; expected ddpg, dqn, "
                     f"reinforce or static")


def build_item_policy(config: RunConfig, data: Interactions) -> tuple[nn.Module, Any]:
    """An item-level baseline's module and its own config (from config.baseline)."""
    entry = ITEM_POLICIES.get(config.name)
    if entry is None:
        raise ValueError(f"{config.name!r} is not an item-level baseline; expected one of "
                         f"{sorted(ITEM_POLICIES)}")
    baseline_config: Any = build(entry.config, config.baseline, "baseline")
    return entry.build(baseline_config, data, config.model.history_length), baseline_config


def rebuild_item_policy(config: RunConfig, data: Interactions,
                        state: dict[str, Any]) -> nn.Module:
    """A trained item-level baseline under other non-learnt settings of `config` (e.g. its
    static weights): built anew, then given the trained state."""
    module, _ = build_item_policy(config, data)
    module.load_state_dict(state)
    return module


def save_run(out: Path, config: RunConfig, model: PredictorModel, actor: nn.Module,
             data: Interactions) -> None:
    """A weighted model: predictor weights, policy weights, config and schema."""
    out.mkdir(parents=True, exist_ok=True)
    _save_module(model, out / MODEL_FILE)
    _save_module(actor, out / ACTOR_FILE)
    _save_meta(out, config, data)


def save_item_run(out: Path, config: RunConfig, module: nn.Module, data: Interactions
                  ) -> None:
    """An item-level baseline: its module's weights (as the model file), config, schema."""
    out.mkdir(parents=True, exist_ok=True)
    _save_module(module, out / MODEL_FILE)
    _save_meta(out, config, data)


def _save_module(module: nn.Module, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path)


def _save_meta(out: Path, config: RunConfig, data: Interactions) -> None:
    write_json(out / CONFIG_FILE, config.to_dict())
    write_json(out / SCHEMA_FILE, {
        "deepprl_version": __version__, "dataset": data.name,
        "shape": dataclasses.asdict(data_shape(data)),
        "objectives": list(data.objective_names), "context": list(data.context_names),
        "user_features": list(data.user_feature_names),
        "item_features": list(data.item_feature_names),
        "user_ids": list(data.user_ids), "item_ids": list(data.item_ids),
        "data_fingerprint": fingerprint(data),
    })


def fingerprint(data: Interactions) -> str:
    """SHA-256 of the encoded log (ids, times, objectives, rewards): detects changed data."""
    digest = hashlib.sha256()
    for array in (data.user, data.item, data.time, data.objectives, data.reward):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load_run(run: str | Path) -> tuple[RunConfig, Recommender | ItemRanker]:
    """Rebuild data, model and actor of a run; RunError with a clear message otherwise."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"{run}: no such run directory")
    for name in (MODEL_FILE, CONFIG_FILE, SCHEMA_FILE):
        if not (run / name).is_file():
            raise RunError(f"{run}: missing {name}; is this a directory written by "
                           f"'deepprl train'?")
    try:
        config = RunConfig.from_dict(read_json(run / CONFIG_FILE))
        schema = read_json(run / SCHEMA_FILE)
    except (ValueError, TypeError) as err:
        raise RunError(f"{run}: unreadable config or schema: {err}") from err
    if not isinstance(schema, dict) or not set(schema) >= _SCHEMA_KEYS:
        raise RunError(f"{run}: {SCHEMA_FILE} is incomplete; expected the keys "
                       f"{sorted(_SCHEMA_KEYS)}")
    # 0.x releases may change the format in any minor version, so 0.1 loads only 0.1
    major = str(schema.get("deepprl_version", "")).split(".")[:2]
    if major != __version__.split(".")[:2]:
        raise RunError(f"{run}: written by deepprl {schema.get('deepprl_version')}, "
                       f"this is {__version__}; retrain the model")
    try:
        data = load_dataset(config.dataset)
    except ValueError as err:
        raise RunError(f"{run}: cannot rebuild the run's data: {err}") from err
    if fingerprint(data) != schema["data_fingerprint"]:
        raise RunError(f"{run}: the data no longer matches the log the model was trained on "
                       f"({config.dataset.get('name') or config.dataset.get('data')})")
    torch.manual_seed(config.seed)
    if config.name in ITEM_POLICIES:
        try:
            module, _ = build_item_policy(config, data)
        except ValueError as err:
            raise RunError(f"{run}: cannot build this run's model: {err}") from err
        _load_module(module, run / MODEL_FILE, run)
        return config, ItemRanker(module, data, config.model.history_length)
    if not (run / ACTOR_FILE).is_file():
        raise RunError(f"{run}: missing {ACTOR_FILE}; is this a directory written by "
                       f"'deepprl train'?")
    try:
        model = build_model(config, data)
        actor = build_policy(config, model, data)
    except ValueError as err:
        raise RunError(f"{run}: cannot build this run's model: {err}") from err
    _load_module(model, run / MODEL_FILE, run)
    _load_module(actor, run / ACTOR_FILE, run)
    recommender = Recommender(model, actor, data)
    if not config.policy.dynamic:
        recommender.fix_weights_at(run_split(data, config))
    return config, recommender


def load_weighted_run(run: str | Path) -> tuple[RunConfig, Recommender]:
    """load_run for a model that ranks by sum_k alpha_k y_hat_k (RunError otherwise)."""
    config, ranker = load_run(run)
    if not isinstance(ranker, Recommender):
        raise RunError(f"{run}: model {config.name!r} ranks items directly; this needs a "
                       f"model with objective weights (e.g. deepprl)")
    return config, ranker


def _load_module(module: nn.Module, path: Path, run: Path) -> None:
    try:
        module.load_state_dict(load_file(path))
    except Exception as err:  # safetensors' own error type, RuntimeError on shape mismatch
        raise RunError(f"{run}: corrupt or incompatible weights in {path.name}: {err}") from err
    module.eval()


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON: {err}") from err
