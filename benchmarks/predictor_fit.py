"""Stage 1 only: does each zoo predictor fit? Test MAE per objective, best epoch, flags.

    .venv/bin/python benchmarks/predictor_fit.py --dataset movielens-100k --seeds 0 1 2 \
        [--models deepprl shared-bottom ...] [--set model.loss=l1] [--out FILE]

For every (dataset, seed, model) it builds the zoo recipe's run config (deepprl.zoo:
deepprl = SA-Time-LSTM + Mixture of HyperNetwork; the baselines with their own encoders),
splits as `deepprl train` does, trains stage 1 on the training events (best epoch on the
validation events), and reports the test MAE of the logged items per objective (as
metrics.json's test_mae), the best epoch, the share of test predictions within 0.01 of 0
or 1 (saturation) and within 1e-6 (beyond the bce clamp), the MoH's generated-tower
cosine and its mixture attention averaged over test events, and the collapse/divergence
flags of deepprl.train.stage1_checks. Prints one JSON object per run (and writes them all
with --out).

Run from another checkout's src (PYTHONPATH=...) it measures that code: features this
code lacks (validation, checks) are reported as null, so old and new compare on one script.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import build_model, run_split
from deepprl.config import RunConfig, build
from deepprl.data.registry import load_dataset
from deepprl.data.sequences import history_index, make_batch
from deepprl.train.run import seed_everything
from deepprl.train.stage1 import fit_predictor, prediction_error
from deepprl.zoo import configure

MODELS = ["deepprl", "shared-bottom", "variant5-cross-stitch", "mmoe", "ple", "mose"]


def _overrides(config: RunConfig, sets: list[str]) -> RunConfig:
    """--set section.field=value (JSON value, or a plain string)."""
    for item in sets:
        key, _, raw = item.partition("=")
        section, _, name = key.partition(".")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        current = dataclasses.asdict(getattr(config, section))
        config = dataclasses.replace(config, **{section: build(
            type(getattr(config, section)), {**current, name: value}, section)})
    return config


@torch.no_grad()
def saturation(model: torch.nn.Module, data: Any, events: np.ndarray, margin: float,
               *, wrong: bool = False) -> float:
    """Share of the logged items' predictions at `events` within `margin` of 0 or 1 (with
    `wrong`: and more than 0.5 from the target, where a saturated sigmoid learns slowly)."""
    model.eval()
    history = history_index(data, model.config.history_length)  # type: ignore[union-attr]
    y_hat = model(make_batch(data, history[events], events),
                  torch.from_numpy(data.item[events])[:, None])[:, 0]
    hit = (y_hat < margin) | (y_hat > 1 - margin)
    if wrong:
        hit &= (y_hat - torch.from_numpy(data.objectives[events])).abs() > 0.5
    return float(hit.float().mean())


def tower_cosine(model: torch.nn.Module) -> float | None:
    """Largest pairwise cosine of the MoH's generated towers (None for other predictors)."""
    predictor = model.predictor  # type: ignore[union-attr]
    if not hasattr(predictor, "tower_parameters"):
        return None
    with torch.no_grad():
        # every generated layer (generated_layers), or the first one (older code)
        layers = predictor.generated_layers() if hasattr(predictor, "generated_layers") \
            else predictor.tower_parameters()
        w = torch.cat([t.flatten(1) for t in layers], 1)  # [K, P]
        cos = torch.nn.functional.cosine_similarity(w[:, None], w[None], dim=-1)
    off = ~torch.eye(len(w), dtype=torch.bool)
    return float(cos[off].max())


def attention(model: Any, data: Any, events: np.ndarray) -> list[list[float]] | None:
    """The MoH's mean mixture attention [K][K] (None for other predictors or older code)."""
    try:
        from deepprl.train.stage1_checks import mixture_attention
    except ImportError:  # a checkout without it
        return None
    result = mixture_attention(model, data, events)
    return None if result is None else result["mean"]


def checks(config: RunConfig, data: Any, split: Any, model: Any, log: list[dict[str, float]]
           ) -> dict[str, Any] | None:
    try:
        from deepprl.train.stage1_checks import candidate_spreads, stage1_checks
    except ImportError:  # a checkout without the checks
        return None
    predicted, true = candidate_spreads(model, data, np.flatnonzero(split.test), split.test,
                                        max_candidates=config.train.max_candidates,
                                        seed=config.seed)
    return stage1_checks(data.objective_names, predicted, true, [r["loss"] for r in log])


def one(dataset: dict[str, Any], model_name: str, seed: int, sets: list[str]
        ) -> dict[str, Any]:
    config = _overrides(configure(model_name, RunConfig(dataset=dataset, seed=seed)), sets)
    seed_everything(seed)
    data = load_dataset(config.dataset)
    split = run_split(data, config)
    model = build_model(config, data)
    init_cosine = tower_cosine(model)
    kwargs: dict[str, Any] = {}
    if "valid_events" in inspect.signature(fit_predictor).parameters:
        kwargs["valid_events"] = np.flatnonzero(split.valid)
    start = time.perf_counter()
    log = fit_predictor(model, data, np.flatnonzero(split.train), config.train, seed=seed,
                        **kwargs)
    seconds = time.perf_counter() - start
    test = np.flatnonzero(split.test)
    scored = [r for r in log if "valid_loss" in r]
    best = min(scored, key=lambda r: r["valid_loss"])["epoch"] if scored else None
    return {"dataset": data.name, "model": model_name, "seed": seed,
            "loss": config.model.loss, "test_mae": prediction_error(model, data, test),
            "best_epoch": best, "epochs": config.train.epochs,
            "train_loss": [r["loss"] for r in log],
            "valid_loss": [r["valid_loss"] for r in scored] or None,
            "saturated_share": saturation(model, data, test[:5000], 0.01),
            # beyond the bce clamp (1e-6): where a clamped bce has no gradient
            "clamped_share": saturation(model, data, test[:5000], 1e-6),
            "clamped_wrong_share": saturation(model, data, test[:5000], 1e-6, wrong=True),
            "tower_cosine_init": init_cosine, "tower_cosine_trained": tower_cosine(model),
            "mixture_attention": attention(model, data, test),
            "checks": checks(config, data, split, model, log), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--option", action="append", default=[],
                        help="dataset option KEY=VALUE (JSON value)")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="config override section.field=value, e.g. model.loss=l1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dataset: dict[str, Any] = {"name": args.dataset}
    for item in args.option:
        key, _, raw = item.partition("=")
        dataset[key] = json.loads(raw)
    rows = []
    for seed in args.seeds:
        for name in args.models:
            rows.append(one(dataset, name, seed, args.sets))
            print(json.dumps(rows[-1]), flush=True)
    result = {"dataset": dataset, "sets": args.sets, "runs": rows}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
