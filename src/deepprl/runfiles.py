"""A run directory's files read without torch: names, config, schema and the stored
inference tables (deepprl.inference_data).

deepprl.artifacts builds models on top of this; the torch-free recommend path
(deepprl.export.runtime) reads a run through it alone, so that `deepprl recommend` on an
exported run never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from deepprl import __version__
from deepprl.config import RunConfig
from deepprl.inference_data import InferenceTables, from_arrays
from deepprl.rundir import RunError, check_complete

_SCHEMA_KEYS = {"deepprl_version", "shape", "objectives", "user_ids", "item_ids",
                "data_fingerprint"}
MODEL_FILE, ACTOR_FILE, CONFIG_FILE, SCHEMA_FILE = (
    "model.safetensors", "actor.safetensors", "config.json", "schema.json")
TABLES_FILE, TABLES_META_FILE = "inference.safetensors", "inference.json"


def saved_run_config(raw: Any) -> RunConfig:
    """A saved run's config.json as a RunConfig. Fields added since keep the value the run
    was trained with: a run saved before model.tower_layers has one-layer MoH towers, one
    saved before model.mixture_self_weight an MoH without the attention prior (0); other
    predictors ignore both, so theirs take today's defaults (and still match a new config
    of theirs, so an experiment's cached baselines are reused)."""
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        model = raw["model"]
        moh = model.get("predictor", "moh") == "moh"
        added = {"tower_layers": 1, "mixture_self_weight": 0.0} if moh else {}
        raw = {**raw, "model": {**added, **model}}
    return RunConfig.from_dict(raw)


def read_meta(run: Path) -> tuple[RunConfig, dict[str, Any]]:
    """A complete run directory's config and schema, checked; RunError otherwise."""
    if not run.is_dir():
        raise RunError(f"{run}: no such run directory")
    check_complete(run, required=(MODEL_FILE, CONFIG_FILE, SCHEMA_FILE))
    for name in (MODEL_FILE, CONFIG_FILE, SCHEMA_FILE):
        if not (run / name).is_file():
            raise RunError(f"{run}: missing {name}; is this a directory written by "
                           f"'deepprl train'?")
    try:
        config = saved_run_config(read_json(run / CONFIG_FILE))
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
    return config, schema


def read_tables(run: Path, config: RunConfig, schema: dict[str, Any]) -> InferenceTables:
    """The tables recommend and serve use instead of the training log; RunError when they
    are missing, corrupt or do not match the model."""
    for name in (TABLES_FILE, TABLES_META_FILE):
        if not (run / name).is_file():
            raise RunError(f"{run}: missing {name}, the tables recommend and serve use "
                           f"instead of the training log; retrain the run with this "
                           f"version of deepprl (or use load_run, which reloads the log)")
    try:
        tables = from_arrays(read_tensors(run / TABLES_FILE),
                             read_json(run / TABLES_META_FILE), schema)
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{run}: corrupt {TABLES_FILE} or {TABLES_META_FILE}: {err}") from err
    if tables.history_length != config.model.history_length:
        raise RunError(f"{run}: {TABLES_META_FILE} keeps {tables.history_length} events per "
                       f"user, the model reads {config.model.history_length}; retrain")
    return tables


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        return safetensors.numpy.load_file(path)
    except Exception as err:  # safetensors' own error type on a corrupt file
        raise RunError(f"{path}: not a readable safetensors file: {err}") from err


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON: {err}") from err
