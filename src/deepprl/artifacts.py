"""Save and load a run: weights (safetensors), config, schema, ids and package version,
and the tables inference needs from the training log (deepprl.inference_data).

Loading never unpickles: tensors come from safetensors, everything else from JSON.
load_run rebuilds the training log (evaluation, experiments); load_serving_run needs only
the run directory (recommend, serve).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from deepprl import __version__
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig, build
from deepprl.data.interactions import Interactions
from deepprl.inference_data import (
    InferenceTables,
    SeenItems,
    tables_from_log,
    to_arrays,
)
from deepprl.io import save_numpy_safetensors, save_safetensors
from deepprl.io import write_json as write_json
from deepprl.learners import weight_learner
from deepprl.models.network import DataShape, PredictorModel
from deepprl.policy.weights import Actor, FixedWeights
from deepprl.recommender import ItemRanker, Recommender
from deepprl.rundir import RunError as RunError
from deepprl.rundir import read_marker
from deepprl.runfiles import (  # re-exported: the names every caller imports from here
    ACTOR_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    TABLES_FILE,
    TABLES_META_FILE,
    read_json,
    read_meta,
    read_tables,
    read_tensors,
)
from deepprl.runfiles import saved_run_config as saved_run_config

if TYPE_CHECKING:  # the loaders and splits are imported where the log is rebuilt: serving
    from deepprl.data.splits import Split  # a run needs neither (and starts faster)

SERVED_FILE = "served.json"
SCORED_FILE = "scored.safetensors"
"""The predictions of a weighted run's evaluation sets (Recommender.remembered), made by the
frozen predictor of MODEL_FILE: evaluating the run again reads them (save_scored)."""
"""Weighted runs checked by deepprl.train.pessimism: which policy the run serves
("learned" or "static", the static alpha then in ACTOR_FILE) and the check's figures."""


def run_split(data: Interactions, config: RunConfig) -> Split:
    """The train/test split of a run, as its config says (the validation windows chosen
    from the data by deepprl.data.splits.choose_split)."""
    from deepprl.data.splits import make_split

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


def build_policy(config: RunConfig, model: PredictorModel, data: Interactions, *,
                 served: str = "learned") -> nn.Module:
    """The acting weight policy a run's learner (deepprl.learners) learns (its weights
    come from training or from the run's policy file); with served = "static" (a run
    that fell back, see SERVED_FILE) the static alpha it serves instead."""
    if served == "static":
        return FixedWeights.equal(data.n_objectives)  # the run's static alpha replaces it
    if served != "learned":
        raise ValueError(f"served must be 'learned' or 'static', got {served!r}")
    build = weight_learner(config.policy.algorithm).build
    return build(config.policy, model.state_dim, data.context.shape[1], data.n_objectives)


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


def item_ranker(config: RunConfig, data: Interactions, module: nn.Module, *,
                seen: SeenItems | None = None) -> ItemRanker:
    """A trained item-level baseline as a Ranker; one whose config has static objective
    weights (MO-LinUCB, MORL) can be reweighted: built anew with others, trained state
    kept (static-weight sweeps). `seen`: as in ItemRanker (a run's stored tail)."""
    fields = {f.name for f in dataclasses.fields(ITEM_POLICIES[config.name].config)}
    if "weights" not in fields:
        return ItemRanker(module, data, config.model.history_length, seen=seen)
    state = module.state_dict()

    def rebuild(weights: list[float]) -> nn.Module:
        trial = dataclasses.replace(config, baseline={**config.baseline, "weights": weights})
        return rebuild_item_policy(trial, data, state)
    return ItemRanker(module, data, config.model.history_length, rebuild=rebuild, seen=seen)


def save_run(out: Path, config: RunConfig, model: PredictorModel, actor: nn.Module,
             data: Interactions, *, check: dict[str, Any] | None = None) -> None:
    """A weighted model: predictor weights, policy weights, config and schema; with the
    pessimism `check` of its learner, SERVED_FILE (the policy it serves and the check)."""
    out.mkdir(parents=True, exist_ok=True)
    _save_module(model, out / MODEL_FILE)
    _save_module(actor, out / ACTOR_FILE)
    _save_meta(out, config, data)
    if check is not None:
        write_json(out / SERVED_FILE, {"served": check["served"], "policy_check": check})
    frozen = None if config.policy.dynamic else _frozen_weights(config, model, actor, data)
    save_tables(out, tables_from_log(data, config.model.history_length, frozen))


def save_item_run(out: Path, config: RunConfig, module: nn.Module, data: Interactions
                  ) -> None:
    """An item-level baseline: its module's weights (as the model file), config, schema."""
    out.mkdir(parents=True, exist_ok=True)
    _save_module(module, out / MODEL_FILE)
    _save_meta(out, config, data)
    save_tables(out, tables_from_log(data, config.model.history_length))


def _save_module(module: nn.Module, path: Path) -> None:
    save_safetensors(path, module.state_dict())


def _frozen_weights(config: RunConfig, model: PredictorModel, actor: nn.Module,
                    data: Interactions) -> np.ndarray:
    """[U + 1, K] the alpha each user keeps in the w/o-dynamic variant (fix_weights_at on
    the full log); NaN rows for users without an event before the test period."""
    recommender = Recommender(model, actor, data)
    recommender.fix_weights_at(run_split(data, config))
    return recommender.frozen_weight_table()


def save_tables(out: Path, tables: InferenceTables) -> None:
    """What recommend and serve need from the log: TABLES_FILE + TABLES_META_FILE."""
    arrays, meta = to_arrays(tables)
    write_tensors(out / TABLES_FILE, arrays)
    write_json(out / TABLES_META_FILE, meta)


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
    """Rebuild data, model and actor of a run; RunError with a clear message otherwise
    (also for a run that never completed, or whose files changed after training).

    This reloads the training log (evaluation needs every event); to recommend or serve,
    load_serving_run needs the run directory only."""
    run = Path(run)
    config, schema = read_meta(run)
    data = _training_log(run, config, schema)
    torch.manual_seed(config.seed)
    if config.name in ITEM_POLICIES:
        return config, item_ranker(config, data, _item_module(run, config, data))
    model, actor = _weighted_modules(run, config, data)
    recommender = Recommender(model, actor, data)
    if not config.policy.dynamic:
        recommender.fix_weights_at(run_split(data, config))
    if SCORED_FILE in (read_marker(run) or {}).get("files", {}):  # digest checked above
        try:
            recommender.remember(read_tensors(run / SCORED_FILE))
        except (KeyError, ValueError):  # another layout of the file: score them again
            recommender.remember({})
    return config, recommender


def save_scored(out: Path, recommender: Recommender) -> None:
    """SCORED_FILE: the predictions the recommender keeps (its evaluation sets); written
    with the run, before its completion marker, which then vouches for them."""
    arrays = recommender.remembered()
    if arrays:
        write_tensors(out / SCORED_FILE, arrays)


def load_serving_run(run: str | Path) -> tuple[RunConfig, Recommender | ItemRanker]:
    """load_run from the tables stored in the run, without the training log: for
    recommending and serving (the log may be gone, moved or have grown since)."""
    run = Path(run)
    config, schema = read_meta(run)
    tables = read_tables(run, config, schema)
    data = tables.data
    torch.manual_seed(config.seed)
    if config.name in ITEM_POLICIES:
        return config, item_ranker(config, data, _item_module(run, config, data),
                                   seen=tables.seen)
    model, actor = _weighted_modules(run, config, data)
    return config, Recommender(model, actor, data, seen=tables.seen,
                               frozen_weights=tables.frozen_weights)


def _training_log(run: Path, config: RunConfig, schema: dict[str, Any]) -> Interactions:
    """The run's training log, rebuilt and checked against the fingerprint the run keeps;
    RunError naming the file and what to do when it is gone or has changed."""
    from deepprl.data.registry import load_dataset

    spec = config.dataset
    where = str(spec.get("data") or spec.get("name"))
    if "data" in spec and not Path(str(spec["data"])).is_file():
        raise RunError(f"{run}: the training log {where} is gone; this needs the log the "
                       f"run was trained on: put the file back at that path (recommend and "
                       f"serve work without it, from the tables stored in the run)")
    try:
        data = load_dataset(spec)
    except ValueError as err:
        raise RunError(f"{run}: cannot rebuild the run's data from {where}: {err}") from err
    if fingerprint(data) != schema["data_fingerprint"]:
        raise RunError(f"{run}: the training log {where} has changed since the run was "
                       f"trained (its fingerprint differs); this needs the log as it was: "
                       f"restore it, or train a new run on the new log (recommend and serve "
                       f"work without it, from the tables stored in the run)")
    return data


def _item_module(run: Path, config: RunConfig, data: Interactions) -> nn.Module:
    try:
        module, _ = build_item_policy(config, data)
    except ValueError as err:
        raise RunError(f"{run}: cannot build this run's model: {err}") from err
    _load_module(module, run / MODEL_FILE, run)
    return module


def served_record(run: str | Path) -> dict[str, Any]:
    """SERVED_FILE of a run: {"served": "learned" | "static", "policy_check": {...}};
    {"served": "learned"} for a run without a check (static weights, item-level models)."""
    path = Path(run) / SERVED_FILE
    if not path.is_file():
        return {"served": "learned"}
    record = read_json(path)
    if not isinstance(record, dict) or record.get("served") not in ("learned", "static"):
        raise RunError(f"{path}: expected {{\"served\": \"learned\" | \"static\", ...}}")
    return record


def _weighted_modules(run: Path, config: RunConfig, data: Interactions
                      ) -> tuple[PredictorModel, nn.Module]:
    if not (run / ACTOR_FILE).is_file():
        raise RunError(f"{run}: missing {ACTOR_FILE}; is this a directory written by "
                       f"'deepprl train'?")
    served = served_record(run)["served"]
    try:
        model = build_model(config, data)
        actor = build_policy(config, model, data, served=served)
    except ValueError as err:
        raise RunError(f"{run}: cannot build this run's model: {err}") from err
    _load_module(model, run / MODEL_FILE, run)
    _load_module(actor, run / ACTOR_FILE, run)
    return model, actor


def load_weighted_run(run: str | Path, *, serving: bool = False
                      ) -> tuple[RunConfig, Recommender]:
    """load_run (or load_serving_run with `serving`) for a model that ranks by
    sum_k alpha_k y_hat_k (RunError otherwise)."""
    config, ranker = load_serving_run(run) if serving else load_run(run)
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


def write_tensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """NumPy arrays into one safetensors file (dtypes kept: int64 ids, float64 times)."""
    save_numpy_safetensors(path, arrays)
