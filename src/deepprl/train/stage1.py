"""Stage 1 of Algorithm 1: train embedding, encoder and predictor on logged objectives."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepprl.config import TrainConfig
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import history_index, make_batch
from deepprl.data.stream import ParquetLog
from deepprl.distributed import SINGLE, World, all_sum, average_gradients, broadcast_module, shard
from deepprl.models.network import PredictorModel
from deepprl.train.checkpoint import Checkpoints, Snapshot

Progress = Callable[[str, int, int, dict[str, float]], None]


LOSSES = ("bce", "l1")
"""The per-objective losses; model.loss = "auto" picks one per objective (loss_kinds)."""
ENDS_SHARE = 0.5
"""auto: an objective trains with bce when at least this share of its training values lies
within END_TOLERANCE of 0 or 1, else with l1 (docs/model.md, "Stage 1")."""
END_TOLERANCE = 0.01
"""Near an end: a sigmoid gets there only at |logit| > 4.6, where l1's logit gradient,
y_hat (1 - y_hat), is below 0.01."""


def prediction_loss(y_hat: torch.Tensor, y: torch.Tensor, kind: str | Sequence[str]
                    ) -> torch.Tensor:
    """Sum over objectives, mean over events, of |y_hat - y| (l1, paper eq. 2) or of the
    binary cross-entropy (bce, for targets in [0, 1]); `kind` one for all objectives or one
    per objective (loss_kinds). [B, K] -> []

    bce on the sigmoid's output: its gradient on the logit is y_hat - y, as on logits,
    except beyond the clamp (|logit| > 13.8), where it is 0; docs/model.md measures the
    predictions there (MoH on MovieLens-100K: 3.6%, none of them wrong), so no logit
    path is exposed."""
    kinds = (kind,) * y.shape[-1] if isinstance(kind, str) else tuple(kind)
    for k in kinds:
        if k not in LOSSES:
            raise ValueError(f"unknown loss {k!r}; expected 'l1' or 'bce' (resolve 'auto' "
                             f"with loss_kinds)")
    if len(kinds) != y.shape[-1]:
        raise ValueError(f"{len(kinds)} losses for {y.shape[-1]} objectives")
    bce = torch.tensor([k == "bce" for k in kinds], device=y.device)  # [K]
    total = (y_hat[..., ~bce] - y[..., ~bce]).abs().sum(-1)  # [B]
    if bool(bce.any()):
        total = total + F.binary_cross_entropy(y_hat[..., bce].clamp(1e-6, 1 - 1e-6),
                                               y[..., bce], reduction="none").sum(-1)
    return total.mean()


def loss_kinds(data: Interactions, events: np.ndarray, kind: str) -> tuple[str, ...]:
    """The loss of each objective under model.loss = `kind`: itself for bce or l1; for auto,
    bce where the objective lies in [0, 1] and at least ENDS_SHARE of its values at
    `events` (the training events) lie within END_TOLERANCE of 0 or 1, else l1. Why (the
    MAE is the target): l1 fits the median, the MAE's optimum, but where the median sits at
    an end it is reached only by saturating the sigmoid, where l1's logit gradient
    vanishes; bce's does not."""
    if kind != "auto":
        return (kind,) * data.n_objectives
    y = data.objectives[events]  # [N, K]
    if not len(y):
        return ("l1",) * data.n_objectives
    at_ends = ((y <= END_TOLERANCE) | (y >= 1 - END_TOLERANCE)).mean(0)  # [K]
    in_range = (data.objectives.min(0) >= 0) & (data.objectives.max(0) <= 1)  # [K]
    return tuple("bce" if share >= ENDS_SHARE and ok else "l1"
                 for share, ok in zip(at_ends, in_range, strict=True))


def check_targets(data: Interactions, kind: str | Sequence[str]) -> None:
    """ValueError unless every objective suits its loss (`kind`: one for all, or one per
    objective): bce needs values in [0, 1] (the schema's normalisation brings logged
    objectives there)."""
    kinds = (kind,) * data.n_objectives if isinstance(kind, str) else tuple(kind)
    if not len(data.objectives):
        return
    low, high = data.objectives.min(0), data.objectives.max(0)  # [K]
    for name, k, lo, hi in zip(data.objective_names, kinds, low, high, strict=True):
        if k == "bce" and (lo < 0 or hi > 1):
            raise ValueError(f"{data.log_name}: objective {name!r} spans [{lo:g}, {hi:g}]; "
                             f"model.loss = 'bce' needs values in [0, 1]: normalise it in "
                             f"the mapping or set model.loss = 'l1'")


def make_optimizer(params: object, config: TrainConfig) -> torch.optim.Optimizer:
    # foreach: one kernel per operation over all parameters instead of one per parameter
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,  # type: ignore[arg-type]
                                foreach=True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay,  # type: ignore[arg-type]
                               foreach=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected 'adam' or 'sgd'")


def fit_predictor(model: PredictorModel, data: Interactions, train_events: np.ndarray,
                  config: TrainConfig, *, seed: int, progress: Progress | None = None,
                  world: World = SINGLE, checkpoints: Checkpoints | None = None,
                  valid_events: np.ndarray | None = None) -> list[dict[str, float]]:
    """Minibatch training; returns one record per epoch (mean loss, records/s).

    With `valid_events` (not empty), every record also holds the validation loss and mean
    MAE there (valid_loss, valid_mae), and the model ends with the parameters of the
    epoch of lowest valid_loss (best_epoch(log)); without, those of the last epoch.

    With `checkpoints`, the state after every epoch (the best epoch's too) is
    checkpointed ("stage1") and training continues from the one found there: the same
    numbers as without a break.

    Data-parallel under torchrun (`world.size` > 1): this rank trains on its shard of
    `train_events` with batch_size / size events per step, and gradients are averaged over
    ranks before every step, so a step sees batch_size events in all, as in one process."""
    import time

    kinds = loss_kinds(data, train_events, model.config.loss)
    check_targets(data, kinds)
    log_losses(data, kinds)
    history = history_index(data, model.config.history_length)
    broadcast_module(model, world)
    optimizer = make_optimizer(model.parameters(), config)
    rng = np.random.default_rng([seed, 11] if not world.distributed else [seed, 11, world.rank])
    validate = valid_events is not None and len(valid_events) > 0
    # the best epoch's parameters so far (a copy, checkpointed with the live model)
    best = copy.deepcopy(model) if validate else None
    modules: dict[str, torch.nn.Module] = {"model": model}
    if best is not None:
        modules["best"] = best
    snapshot = Snapshot(modules=modules, optimizers={"optimizer": optimizer},
                        generators={"order": rng})
    resumed = checkpoints.restore("stage1", snapshot) if checkpoints is not None else None
    log: list[dict[str, float]] = resumed["log"] if resumed is not None else []
    local = shard(train_events, world)
    per_step = -(-config.batch_size // world.size)
    # the same number of steps on every rank (shards differ in size by at most one event)
    largest_shard = -(-len(train_events) // world.size)
    n_batches = -(-largest_shard // per_step)
    if progress is not None:
        progress("stage 1", len(log), config.epochs, {})
    for epoch in range(len(log), config.epochs):
        model.train()
        start = time.perf_counter()
        total = train_steps(model, optimizer, data, history, rng.permutation(local),
                            n_batches, per_step, world, progress, epoch, kinds)
        seconds = time.perf_counter() - start
        total, count = all_sum([total, float(len(local))], world)
        record = {"epoch": epoch + 1, "loss": total / max(count, 1.0),
                  "seconds": seconds, "records_per_s": count / seconds}
        if best is not None and valid_events is not None:
            record.update(validation_error(model, data, history, shard(valid_events, world),
                                           world, kinds=kinds))
            if all(record["valid_loss"] < r["valid_loss"] for r in log):
                best.load_state_dict(model.state_dict())
        log.append(record)
        if checkpoints is not None:
            checkpoints.save("stage1", snapshot, {"log": log})
        if progress is not None:
            progress("stage 1", epoch + 1, config.epochs, log[-1])
    if best is not None:
        model.load_state_dict(best.state_dict())
    return log


def log_losses(data: Interactions, kinds: Sequence[str]) -> None:
    """train.log: the loss each objective trains with."""
    logging.getLogger("deepprl.train").info("stage 1 loss per objective: %s", ", ".join(
        f"{name} {kind}" for name, kind in zip(data.objective_names, kinds, strict=True)))


def best_epoch(log: list[dict[str, float]]) -> int:
    """The epoch (from 1) whose parameters fit_predictor kept: the first of lowest
    valid_loss, or the last one when the records have no validation (0: no epoch)."""
    scored = [r for r in log if "valid_loss" in r]
    if not scored:
        return int(log[-1]["epoch"]) if log else 0
    return int(min(scored, key=lambda r: r["valid_loss"])["epoch"])


@torch.no_grad()
def logged_predictions(model: PredictorModel, data: Interactions, history: np.ndarray,
                       events: np.ndarray, batch_size: int = 1024
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(y_hat [B, K], logged objectives y [B, K]) of the logged items at `events`, batch by
    batch, the model in eval mode."""
    model.eval()
    y_all = torch.from_numpy(data.objectives)
    for lo in range(0, len(events), batch_size):
        chunk = events[lo : lo + batch_size]
        y_hat = model(make_batch(data, history[chunk], chunk),
                      torch.from_numpy(data.item[chunk])[:, None])[:, 0]  # [B, K]
        yield y_hat, y_all[chunk]


@torch.no_grad()
def validation_error(model: PredictorModel, data: Interactions, history: np.ndarray,
                     events: np.ndarray, world: World = SINGLE, batch_size: int = 1024,
                     *, kinds: Sequence[str] | None = None) -> dict[str, float]:
    """valid_loss (the training loss: `kinds` per objective, by default loss_kinds of
    model.loss on `events`) and valid_mae (mean over objectives) of the logged items at
    `events`, this rank's share; summed over ranks, so every rank gets the same figures
    and keeps the same best epoch."""
    if kinds is None:
        kinds = loss_kinds(data, events, model.config.loss)
    loss, error = 0.0, 0.0
    for y_hat, y in logged_predictions(model, data, history, events, batch_size):
        loss += float(prediction_loss(y_hat, y, kinds)) * len(y)
        error += float((y_hat - y).abs().mean(-1).sum())
    loss, error, count = all_sum([loss, error, float(len(events))], world)
    return {"valid_loss": loss / max(count, 1.0), "valid_mae": error / max(count, 1.0)}


def train_steps(model: PredictorModel, optimizer: torch.optim.Optimizer, data: Interactions,
                history: np.ndarray, order: np.ndarray, n_batches: int, per_step: int,
                world: World, progress: Progress | None, epoch: int,
                kinds: Sequence[str] | None = None) -> float:
    """n_batches optimizer steps over `order` (loss `kinds` per objective; by default
    loss_kinds of model.loss on `order`); returns the summed loss x events."""
    if kinds is None:
        kinds = loss_kinds(data, order, model.config.loss)
    y_all = torch.from_numpy(data.objectives)
    total = 0.0
    for b in range(n_batches):
        events = order[b * per_step : (b + 1) * per_step]
        optimizer.zero_grad()
        if len(events):
            batch = make_batch(data, history[events], events)
            y_hat = model(batch, torch.from_numpy(data.item[events])[:, None])[:, 0]  # [B, K]
            loss = prediction_loss(y_hat, y_all[events], kinds)
            loss.backward()
            total += float(loss.detach()) * len(events)
        average_gradients(model.parameters(), len(events), world)
        optimizer.step()
        if progress is not None:
            progress("predictor", b + 1, n_batches, {"epoch": epoch + 1})
    return total


def fit_predictor_stream(model: PredictorModel, log: ParquetLog, config: TrainConfig, *,
                         seed: int, progress: Progress | None = None
                         ) -> list[dict[str, float]]:
    """Stage 1 on a Parquet log read in record batches (deepprl.data.stream): each epoch
    reads the file once, window by window; minibatches are shuffled within a window (make
    batch_rows many times batch_size). Memory: one window, whatever the file's size.
    No validation here (the stream has no split): the model ends at its last epoch.
    model.loss = "auto" picks each objective's loss on the first window."""
    import time

    optimizer = make_optimizer(model.parameters(), config)
    rng = np.random.default_rng([seed, 11])
    log_records = []
    kinds: tuple[str, ...] | None = None
    for epoch in range(config.epochs):
        model.train()
        total, count, start = 0.0, 0, time.perf_counter()
        for window in log.windows():
            if kinds is None:
                kinds = loss_kinds(window.data, window.events, model.config.loss)
                log_losses(window.data, kinds)
            check_targets(window.data, kinds)
            history = history_index(window.data, model.config.history_length)
            events = window.events
            n_batches = -(-len(events) // config.batch_size)
            total += train_steps(model, optimizer, window.data, history,
                                 rng.permutation(events), n_batches, config.batch_size,
                                 SINGLE, progress, epoch, kinds)
            count += len(events)
        seconds = time.perf_counter() - start
        log_records.append({"epoch": epoch + 1, "loss": total / max(count, 1),
                            "seconds": seconds, "records_per_s": count / seconds})
    return log_records


@torch.no_grad()
def prediction_error(model: PredictorModel, data: Interactions, events: np.ndarray,
                     batch_size: int = 1024) -> dict[str, float]:
    """Mean absolute error per objective of the logged items at `events`."""
    history = history_index(data, model.config.history_length)
    errors = [(y_hat - y).abs() for y_hat, y in
              logged_predictions(model, data, history, events, batch_size)]
    mae = torch.cat(errors).mean(0) if errors else torch.zeros(data.n_objectives)
    return {name: float(v) for name, v in zip(data.objective_names, mae, strict=True)}
