"""deepprl train | fit-predictor: training runs."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from deepprl.cli.common import (
    Bars,
    app,
    apply_settings,
    fail,
    print_table,
    run_config,
)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
    dataset: Annotated[str | None, typer.Option(
        help="Built-in dataset (deepprl datasets), e.g. movielens-100k.")] = None,
    data: Annotated[Path | None, typer.Option(help="Your own CSV/Parquet log.")] = None,
    mapping: Annotated[Path | None, typer.Option(help="Mapping file for --data.")] = None,
    model: Annotated[str, typer.Option(help="Registered model (deepprl models).")] = "deepprl",
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Stage-1 epochs.")] = None,
    policy_steps: Annotated[int | None, typer.Option(help="Stage-2 actor-critic steps.")] = None,
    k: Annotated[int | None, typer.Option(help="Top-K for reward and evaluation.")] = None,
    dataset_option: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE passed to the dataset loader, e.g. seed=3 or n_users=500 for the "
             "simulator; repeatable.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override SECTION.FIELD=VALUE (sections model, train, policy, "
                      "eval; see deepprl/config.py), e.g. policy.gamma=0.9; repeatable.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Replace the run already in OUT (it is emptied first).")] = False,
    resume: Annotated[bool, typer.Option(
        help="Continue the killed run in OUT from its last checkpoint (same options as "
             "it was started with).")] = False,
) -> None:
    """Train a model; OUT receives config, seed, weights, metrics and train.log, and
    COMPLETE.json last. An existing run in OUT is refused without --overwrite or --resume.

    Data-parallel on several processes: torchrun --nproc_per_node=N -m deepprl train ...
    (rank 0 writes OUT and prints; see docs/scaling.md)."""
    from deepprl.distributed import env_world
    from deepprl.train.preflight import check_out_dir
    from deepprl.train.run import train_run

    try:
        check_out_dir(out)
        main_rank = env_world().main
        config = run_config(dataset, data, mapping, seed, epochs, policy_steps, k,
                             dataset_option, set_, model)
        with Bars(enabled=not quiet and main_rank) as bars:
            metrics = train_run(config, out, progress=bars, overwrite=overwrite,
                                resume=resume)
    except ValueError as error:
        fail(str(error))
    except OSError as error:  # e.g. OUT under a parent that refuses new directories
        fail(f"{error.filename or out}: {error.strerror or error} (writing the run "
              f"directory {out})")
    if not main_rank:
        return
    print_table(metrics, title=f"{metrics['model']} on {metrics['dataset']} (seed {seed}) "
                                f"-> {out}")


@app.command("fit-predictor")
def fit_predictor_cmd(
    data: Annotated[Path, typer.Option(help="Parquet log (file or directory), sorted by "
                                            "user, then time.")],
    mapping: Annotated[Path, typer.Option(help="Mapping file (README: 'Your own log').")],
    out: Annotated[Path, typer.Option(help="Directory for weights, config and metrics.")],
    batch_rows: Annotated[int, typer.Option(help="Rows per record batch read.")] = 65_536,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Stage-1 epochs.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override SECTION.FIELD=VALUE; repeatable.")] = None,
) -> None:
    """Stage 1 on a log larger than memory, streamed from Parquet in record batches."""
    from deepprl.config import RunConfig
    from deepprl.train.stream import fit_predictor_file

    try:
        from deepprl.data.schema import read_mapping

        spec = {"data": str(data.resolve()), "mapping": read_mapping(mapping).to_dict(),
                "stream": True}
        config = apply_settings(RunConfig(dataset=spec, seed=seed), set_ or [])
        if epochs is not None:
            if epochs < 1:
                raise ValueError("--epochs must be >= 1")
            config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                           epochs=epochs))
        metrics = fit_predictor_file(config, data, mapping, out, batch_rows=batch_rows)
    except ValueError as error:
        fail(str(error))
    sys.stdout.write(json.dumps({k: v for k, v in metrics.items() if k != "stage1"} |
                                {"last_epoch": metrics["stage1"][-1]}) + "\n")
