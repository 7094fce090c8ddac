"""Trained runs for experiments: configured per mode, cached on disk, trained on an executor.

A run is reused when its directory holds a complete run (deepprl.rundir: COMPLETE.json,
files matching their digests) of the requested config, so Table 4, Table 5 and Table 6
share their DeepPRL runs. An incomplete run (a killed experiment) is resumed from its last
checkpoint; a run of another config is replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from deepprl import rundir
from deepprl.artifacts import read_json, saved_run_config
from deepprl.config import RunConfig
from deepprl.experiments.context import Context
from deepprl.parallel import map_tasks
from deepprl.zoo import configure

# Tiny worlds and budgets for --quick: the code path of the full mode in seconds.
QUICK_DATA: dict[str, dict[str, Any]] = {
    "simulator": {"n_users": 24, "n_items": 30, "events_per_user": 30},
    "yelp-hin": {"users": 300},
    "movielens-latest-small": {},
    "movielens-100k": {},
}
QUICK_SETTINGS: dict[str, dict[str, Any]] = {
    "train": {"epochs": 1},
    "policy": {"steps": 40, "static_trials": 4},
    "eval": {"max_events": 150},
}
# The full mode's data: Yelp-HIN's 16k users are sampled to keep every method affordable
# on two cores (stated in each report).
FULL_DATA: dict[str, dict[str, Any]] = {"yelp-hin": {"users": 3000}}
QUICK_BASELINE: dict[str, Any] = {"epochs": 0.2}


def dataset_spec(ctx: Context, **options: Any) -> dict[str, Any]:
    base = QUICK_DATA if ctx.quick else FULL_DATA
    return {"name": ctx.dataset, **base.get(ctx.dataset, {}), **ctx.options, **options}


def run_config(ctx: Context, model: str, seed: int, *, spec: dict[str, Any] | None = None,
               settings: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """The config of `model` at `seed` in this mode, with `settings` {section: {field: v}}
    applied last (sensitivity grids)."""
    config = configure(model, RunConfig(dataset=spec or dataset_spec(ctx), seed=seed))
    layers = [QUICK_SETTINGS] if ctx.quick else []
    layers.append(settings or {})
    for layer in layers:
        for section, fields in layer.items():
            current = getattr(config, section)
            known = {f.name for f in dataclasses.fields(current)}
            config = dataclasses.replace(config, **{section: dataclasses.replace(
                current, **{k: v for k, v in fields.items() if k in known})})
    if ctx.quick and config.name in _item_baselines():
        config = dataclasses.replace(config, baseline={**QUICK_BASELINE, **config.baseline})
    return RunConfig.from_dict(config.to_dict())


def _item_baselines() -> set[str]:
    from deepprl.baselines.registry import ITEM_POLICIES

    return {n for n, e in ITEM_POLICIES.items()
            if "epochs" in {f.name for f in dataclasses.fields(e.config)}}


def fold_settings(ctx: Context) -> list[dict[str, dict[str, Any]]]:
    """One settings layer per repetition of the split: the temporal hold-out, or each fold."""
    if ctx.folds == 0:
        return [{}]
    if ctx.folds < 3:  # the next fold validates, so two folds would leave nothing to train
        raise ValueError(f"--folds must be 0 (temporal hold-out) or >= 3, got {ctx.folds}")
    return [{"train": {"split": "kfold", "folds": ctx.folds, "fold": f}}
            for f in range(ctx.folds)]


def run_dir(ctx: Context, config: RunConfig, label: str | None = None) -> Path:
    """runs/<mode>/<dataset + options>/<model or label>/seed<N>[-fold<F>of<K>]."""
    spec = config.dataset
    options = {k: v for k, v in spec.items() if k != "name"}
    data_key = str(spec.get("name", "log")) + (
        "-" + hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
        if options else "")
    return (ctx.runs / ("quick" if ctx.quick else "full") / data_key / (label or config.name)
            / (f"seed{config.seed}" + (f"-fold{config.train.fold}of{config.train.folds}"
                                       if config.train.split == "kfold" else "")))


def train_or_reuse(config: dict[str, Any], out: str) -> dict[str, Any]:
    """Train the run `config` into `out`, or reuse it when `out` already holds it complete
    (same training: same_training), or resume it when `out` holds it incomplete; returns
    its metrics. Anything else in `out` (another config, a corrupt run) is replaced. An
    executor task of train_all."""
    from deepprl.train.run import train_run

    path = Path(out)
    if _complete_run_of(path, config):
        metrics: dict[str, Any] = read_json(path / "metrics.json")
        return metrics
    saved = rundir.checkpoint_config(path)
    resume = saved is not None and saved == RunConfig.from_dict(config).to_dict()
    return train_run(RunConfig.from_dict(config), path, resume=resume, overwrite=not resume)


def _complete_run_of(path: Path, config: dict[str, Any]) -> bool:
    """`path` holds a complete run (marker, digests) of the training `config`."""
    try:
        rundir.check_complete(path, required=("config.json", "metrics.json"))
    except rundir.RunError:
        return False
    saved = saved_run_config(read_json(path / "config.json")).to_dict()
    return same_training(saved, config)


# model settings only the Mixture of HyperNetwork reads
_MOH_SETTINGS = ("tower_layers", "mixture_self_weight")


def same_training(saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Equal configs, except the static weights an item-level baseline tuned and saved for
    itself when none were asked for (its config.json then records them), and, for an
    item-level baseline (it builds no predictor), the MoH's own settings."""
    if "weights" not in wanted.get("baseline", {}):
        saved = {**saved, "baseline": {k: v for k, v in saved.get("baseline", {}).items()
                                       if k != "weights"}}
    if wanted.get("name") in _item_policies():
        saved, wanted = (_without_moh_settings(c) for c in (saved, wanted))
    return saved == wanted


def _item_policies() -> set[str]:
    from deepprl.baselines.registry import ITEM_POLICIES

    return set(ITEM_POLICIES)


def _without_moh_settings(config: dict[str, Any]) -> dict[str, Any]:
    model = {k: v for k, v in config.get("model", {}).items() if k not in _MOH_SETTINGS}
    return {**config, "model": model}


def train_all(ctx: Context, jobs: list[tuple[RunConfig, Path]]) -> list[dict[str, Any]]:
    """Train (or reuse) every (config, directory) on the context's executor."""
    tasks = [{"config": config.to_dict(), "out": str(path)} for config, path in jobs]
    return map_tasks(train_or_reuse, tasks, executor=ctx.executor, address=ctx.address)
