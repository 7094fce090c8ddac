"""Algorithm 1 end to end: data -> stage 1 -> stage 2 -> saved run -> offline metrics.

Item-level baselines take their own path: build -> fit -> save -> the same evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl import __version__, rundir
from deepprl.artifacts import (
    build_item_policy,
    build_model,
    build_policy,
    read_json,
    rebuild_item_policy,
    save_item_run,
    save_run,
    save_scored,
    write_json,
)
from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.registry import load_dataset
from deepprl.data.splits import Split
from deepprl.distributed import SINGLE, World, barrier, process_group
from deepprl.eval.offline import evaluate_ranker
from deepprl.eval.static_weights import (
    top_k_mean_reward,
    tune_weights,
    validation_set,
)
from deepprl.learners import LEARNERS, weight_learner
from deepprl.models.network import PredictorModel
from deepprl.provenance import code_version
from deepprl.recommender import ItemRanker, Recommender
from deepprl.train.checkpoint import Checkpoints
from deepprl.train.preflight import preflight
from deepprl.train.progress import ProgressLog, phase
from deepprl.train.stage1 import Progress, best_epoch, fit_predictor, prediction_error
from deepprl.train.stage1_checks import candidate_spreads, stage1_checks, warnings
from deepprl.zoo import models

log = logging.getLogger("deepprl.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_run(config: RunConfig, out: str | Path, *, progress: Progress | None = None,
              overwrite: bool = False, resume: bool = False, export: bool = True
              ) -> dict[str, Any]:
    """Train the configured model, save it under `out`, return (and save) its metrics.

    An existing non-empty `out` is refused unless `overwrite` (emptied first) or `resume`
    (continued from its last checkpoint; a complete run of the same config is returned
    as it is). The run's files are written atomically and COMPLETE.json last (see
    deepprl.rundir). Launched by torchrun with several processes, training is
    data-parallel (see deepprl.distributed) and only rank 0 writes `out`; the other ranks
    return {"rank": r, ...} without metrics; such runs are not checkpointed. With `export`,
    a weighted run also holds its ONNX export (deepprl.export; about a second on a small
    model), from which `deepprl recommend` answers without importing torch."""
    out = Path(out)
    with process_group() as world:
        if not world.main:
            return _train(config, out, progress, world, export=export)
        with rundir.locked(out):
            mode = _prepare_out(out, config, world, overwrite=overwrite, resume=resume)
            if mode == "done":
                done: dict[str, Any] = read_json(out / "metrics.json")
                return done
            return _train_logged(config, out, progress, world, mode, export=export)


def _train_logged(config: RunConfig, out: Path, progress: Progress | None, world: World,
                  mode: str, *, export: bool = True) -> dict[str, Any]:
    """_train with train.log and checkpoints (none under torchrun) in `out`."""
    checkpoints = None if world.distributed else Checkpoints(
        folder=rundir.start_checkpoints(out, config.to_dict()))
    handler = _log_to(out, append=mode == "resume")
    if mode == "resume":
        _log_resume(out, checkpoints)
    try:
        return _train(config, out, ProgressLog(logger=log, inner=progress), world,
                      checkpoints, export=export)
    except Exception:
        if mode == "fresh":  # e.g. a bad option found before training: a rerun may start
            rundir.forget_failed_start(out)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def _prepare_out(out: Path, config: RunConfig, world: World, *, overwrite: bool,
                 resume: bool) -> str:
    """rundir.prepare: "fresh", "resume" or "done"."""
    if resume and world.distributed:
        raise ValueError("--resume covers single-process training; data-parallel runs "
                         "(torchrun) are not checkpointed: rerun with --overwrite")
    return rundir.prepare(out, config.to_dict(), overwrite=overwrite, resume=resume)


def _log_to(out: Path, *, append: bool) -> logging.Handler:
    """train.log, written as training goes (a resumed run appends to the killed one's)."""
    handler = logging.FileHandler(out / rundir.LOG_FILE, mode="a" if append else "w",
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _resume_point(checkpoints: Checkpoints | None) -> str:
    """Where a resumed run continues, for train.log."""
    for name, unit in (("stage2", "step"), ("stage1", "epoch")):
        position = checkpoints.position(name) if checkpoints is not None else None
        if position is not None:
            done = position.get("step", len(position.get("log", [])))
            return f"its {name} checkpoint ({unit} {done})"
    return "the start (no checkpoint of a training stage)"


def _log_resume(out: Path, checkpoints: Checkpoints | None) -> None:
    log.info("resuming %s from %s", out, _resume_point(checkpoints))
    started_with = rundir.checkpoint_code(out)
    if started_with is not None and started_with != code_version():
        log.warning("the run was started by %s and resumes with %s: results may differ "
                    "from an uninterrupted run", started_with, code_version())


def _train(config: RunConfig, out: Path, progress: Progress | None, world: World,
           checkpoints: Checkpoints | None = None, *, export: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    entry = models().get(config.name)
    if entry is None:
        raise ValueError(f"unknown model {config.name!r}; expected one of {sorted(models())}")
    if entry.item_policy is None:
        _check_learner(config, world)
    elif world.distributed:
        raise ValueError(f"data-parallel training (torchrun) covers the weighted models with "
                         f"policy {_parallel_learners()}; run {config.name!r} in one process")
    seed_everything(config.seed)
    data = load_dataset(config.dataset)
    log.info("deepprl %s, model %s, seed %d, data %s: %d events, %d users, %d items, "
             "objectives %s; %d process(es)", __version__, config.name, config.seed,
             data.name, data.n_events, data.n_users, data.n_items, data.objective_names,
             world.size)
    plan = preflight(config, data)  # every stage's precondition, before any training
    split = plan.split
    if entry.item_policy is not None:
        metrics = _train_item_policy(config, data, split, out)
    else:
        metrics = _train_weighted(config, data, split, out, progress, world, checkpoints,
                                  export=export)
    if not world.main:
        barrier(world)
        return {"rank": world.rank, "world_size": world.size, "model": config.name}
    metrics.update({"model": config.name, "dataset": data.name, "seed": config.seed,
                    "seconds": time.perf_counter() - started, "world_size": world.size,
                    "code": code_version(), "validation": plan.validation})
    write_json(out / "seed.txt", config.seed)
    write_json(out / "metrics.json", metrics)
    _complete(out, config)
    log.info("metrics %s", {m: metrics[m] for m in ("learned", "equal") if m in metrics})
    barrier(world)
    return metrics


def _complete(out: Path, config: RunConfig) -> None:
    """The completion marker, last; then the checkpoints go (a kill in between leaves a
    complete run whose leftover checkpoints nothing reads)."""
    rundir.write_marker(out, config.to_dict())
    rundir.remove_checkpoints(out)


def _train_weighted(config: RunConfig, data: Interactions, split: Split, out: Path,
                    progress: Progress | None, world: World = SINGLE,
                    checkpoints: Checkpoints | None = None, *, export: bool = True
                    ) -> dict[str, Any]:
    model = build_model(config, data)
    started = time.perf_counter()
    stage1 = fit_predictor(model, data, np.flatnonzero(split.train), config.train,
                           seed=config.seed, progress=progress, world=world,
                           checkpoints=checkpoints, valid_events=np.flatnonzero(split.valid))
    stage1_seconds = time.perf_counter() - started  # its epochs (validation included)
    mae = prediction_error(model, data, np.flatnonzero(split.test)) if world.main else {}
    log.info("test MAE of the logged items: %s; parameters of epoch %d (%s)", mae,
             best_epoch(stage1), "lowest validation loss" if split.valid.any()
             else "the last: no validation events")
    checks = _stage1_checks(config, data, split, model, stage1) if world.main else {}

    for p in model.parameters():  # stage 2 sees a frozen stage-1 model
        p.requires_grad_(False)
    recommender = Recommender(model, build_policy(config, model, data), data)
    fit = weight_learner(config.policy.algorithm).fit()
    started = time.perf_counter()
    stage2, weights, check = fit(recommender, data, split, config, progress=progress,
                                 world=world, checkpoints=checkpoints)
    stage2_seconds = time.perf_counter() - started
    if not world.main:
        return {}
    if not config.policy.dynamic:
        recommender.fix_weights_at(split)
    save_run(out, config, model, recommender.policy, data, check=check)
    tuned = weights is None and bool(split.valid.any())  # the static reference is tuned
    phase(progress, "evaluation", 0, trials=config.policy.static_trials if tuned else 0)
    metrics = evaluate_ranker(recommender, config, split, static_weights=weights)
    save_scored(out, recommender)  # `deepprl evaluate` then skips the forward passes
    phase(progress, "evaluation", 1)
    if export:
        export_onnx(out, config, recommender)
    metrics.update({"test_mae": mae, "stage1": stage1, "best_epoch": best_epoch(stage1),
                    "stage1_checks": checks, "stage2_last": stage2[-1],
                    # wall clock under "seconds" keys: what two runs may differ in
                    "timing": {"stage1": {"seconds": stage1_seconds},
                               "stage2": {"seconds": stage2_seconds}}})
    if check is not None:  # what "learned" reports: the learned policy or its fallback
        metrics.update({"served": check["served"], "policy_check": check})
    return metrics


def export_onnx(out: Path, config: RunConfig, recommender: Recommender) -> None:
    """RUN/onnx (deepprl.export) of the policy `recommender` serves, before the completion
    marker (of train, and of an online update's new version); an export that fails is
    logged and leaves none: recommend and serve then use PyTorch, as for older runs."""
    from deepprl.export.graphs import export_into_run
    from deepprl.export.manifest import EXPORT_DIR

    started = time.perf_counter()
    try:
        check = export_into_run(out, config, recommender)["check"]
    except Exception as err:  # an exporter or onnxruntime error: the run itself is fine
        shutil.rmtree(out / EXPORT_DIR, ignore_errors=True)
        log.warning("ONNX export failed (%s: %s); recommend and serve will use PyTorch",
                    type(err).__name__, err)
        return
    diffs = {k[len("max_abs_diff_"):]: v for k, v in check.items() if k.startswith("max_abs")}
    log.info("ONNX export in %s (%.1f s): largest |ONNX - PyTorch| on %d rows %s%s",
             out / EXPORT_DIR, time.perf_counter() - started, check["rows"], diffs,
             "" if check["within_tolerance"] else
             f"; above {check['tolerance']:g}: recommend will use PyTorch")


def _stage1_checks(config: RunConfig, data: Interactions, split: Split, model: PredictorModel,
                   stage1: list[dict[str, float]]) -> dict[str, Any]:
    """Collapse and divergence flags of stage 1 (deepprl.train.stage1_checks) over the test
    events' candidates; each raised flag is a WARNING in train.log."""
    predicted, true = candidate_spreads(model, data, np.flatnonzero(split.test), split.test,
                                        max_candidates=config.train.max_candidates,
                                        seed=config.seed)
    checks = stage1_checks(data.objective_names, predicted, true,
                           [r["loss"] for r in stage1])
    for line in warnings(checks):
        log.warning(line)
    return checks


def _check_learner(config: RunConfig, world: World) -> None:
    """The run's weight learner exists, trains on a log, and may run under torchrun."""
    learner = weight_learner(config.policy.algorithm)
    if learner.interactive:
        raise ValueError(f"policy.algorithm {config.policy.algorithm!r} learns in an "
                         f"interactive world; train_run trains on a log")
    if world.distributed and not learner.distributed:
        raise ValueError(f"data-parallel training (torchrun) covers the weighted models with "
                         f"policy {_parallel_learners()}; run {config.name!r} in one process")


def _parallel_learners() -> str:
    return " or ".join(name for name, learner in LEARNERS.items() if learner.distributed)


def _train_item_policy(config: RunConfig, data: Interactions, split: Split, out: Path
                       ) -> dict[str, Any]:
    entry = ITEM_POLICIES[config.name]
    module, baseline_config = build_item_policy(config, data)
    fit_log = entry.fit(module, data, split, baseline_config, config.eval.k, config.seed)
    for record in fit_log[:: max(1, len(fit_log) // 10)]:
        log.info("fit %s", record)
    tunable = "weights" in {f.name for f in dataclasses.fields(baseline_config)}
    if tunable and split.valid.any() and "weights" not in config.baseline:
        weights = _tune_item_weights(config, data, split, module)
        log.info("static weights tuned on validation: %s", weights)
        config = dataclasses.replace(config, baseline={**config.baseline, "weights": weights})
        module = rebuild_item_policy(config, data, module.state_dict())
    save_item_run(out, config, module, data)
    ranker = ItemRanker(module, data, config.model.history_length)
    metrics = evaluate_ranker(ranker, config, split)
    metrics["fit_last"] = fit_log[-1] if fit_log else {}
    if "weights" in config.baseline:
        metrics["static_weights"] = config.baseline["weights"]
    return metrics


def _tune_item_weights(config: RunConfig, data: Interactions, split: Split,
                       module: torch.nn.Module) -> list[float]:
    """Optuna over the static weights of a multi-objective item-level baseline (paper
    §5.2), scored on validation events; no retraining: the weights are not learnt."""
    k = config.eval.k
    vs = validation_set(data, split, k=k, seed=config.seed)
    state = module.state_dict()
    own = ItemRanker(module, data, config.model.history_length)
    values = own.objective_scores(vs.events, vs.items)  # once, where only weights change

    def mean_reward(alpha: np.ndarray) -> float:
        if values is not None:
            return top_k_mean_reward(own.aggregated(values, alpha.tolist()), vs, k)
        trial = dataclasses.replace(config, baseline={**config.baseline,
                                                      "weights": alpha.tolist()})
        ranker = ItemRanker(rebuild_item_policy(trial, data, state), data,
                            config.model.history_length)
        return top_k_mean_reward(ranker.scores(vs.events, vs.items), vs, k)

    weights, _ = tune_weights(mean_reward, data.n_objectives,
                              trials=config.policy.static_trials, seed=config.seed)
    return [float(w) for w in weights]
