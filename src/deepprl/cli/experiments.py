"""deepprl experiment | report | abtest analyse: the paper's experiments and A/B analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepprl.cli.common import (
    abtest_app,
    app,
    fail,
    parse_options,
)


@app.command()
def experiment(
    name: Annotated[str, typer.Argument(help="Experiment (deepprl experiment list).")],
    dataset: Annotated[str | None, typer.Option(
        help="Dataset; default: the experiment's first.")] = None,
    quick: Annotated[bool, typer.Option(help="Tiny sizes (what CI runs).")] = False,
    seeds: Annotated[int | None, typer.Option(
        help="Repetitions (seeds / initialisations); default per experiment.")] = None,
    folds: Annotated[int, typer.Option(
        help="0: temporal hold-out; F: every fold of a time-stratified F-fold split, "
             "each over the seeds (offline tables).")] = 0,
    out: Annotated[Path, typer.Option(help="Root of the reports.")] = Path("reports"),
    runs: Annotated[Path, typer.Option(help="Cache of trained runs, reused across "
                                            "experiments.")] = Path("runs/experiments"),
    executor: Annotated[str, typer.Option(help="sequential | processes | ray")] = "sequential",
    address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    dataset_option: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE passed to the dataset loader, e.g. objectives=relevance,consistency,"
             "recency (docs/datasets.md); repeatable. The report is named after them.")] = None,
) -> None:
    """Run one of the paper's experiments; writes OUT/NAME/DATASET.md, .json and PNGs.
    `deepprl experiment list` lists them."""
    from deepprl.experiments import EXPERIMENTS, Context, run_experiment

    if name == "list":
        width = max(len(n) for n in EXPERIMENTS)
        for key, entry in EXPERIMENTS.items():
            typer.echo(f"{key:{width}s}  {entry.description} [{', '.join(entry.datasets)}]")
        return
    try:
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; expected one of "
                             f"{sorted(EXPERIMENTS)} (deepprl experiment list)")
        chosen = dataset or EXPERIMENTS[name].datasets[0]
        command = " ".join(["deepprl", "experiment", name, "--dataset", chosen,
                            *(["--quick"] if quick else []),
                            *(["--seeds", str(seeds)] if seeds is not None else []),
                            *(["--folds", str(folds)] if folds else []),
                            *[f"--dataset-option {pair}" for pair in dataset_option or []]])
        options = parse_options(dataset_option or [])
        if options:  # refuse a bad option now, not after the first training
            from deepprl.data.registry import dataset_spec

            options = {k: v for k, v in dataset_spec(chosen, options=options).items()
                       if k != "name"}
        ctx = Context(dataset=chosen, quick=quick, seeds=seeds, folds=folds, out=out, runs=runs,
                      executor=executor, address=address, command=command, options=options)
        path = run_experiment(name, ctx)
    except ValueError as error:
        fail(str(error))
    typer.echo(str(path))


@app.command()
def report(
    reports: Annotated[Path, typer.Option(help="Root of the reports.")] = Path("reports"),
) -> None:
    """Gather every experiment's reports into REPORTS/README.md, figures inline."""
    from deepprl.experiments.collect import collect

    try:
        path = collect(reports)
    except ValueError as error:
        fail(str(error))
    typer.echo(str(path))


@abtest_app.command("analyse")
def abtest_analyse(
    log: Annotated[Path, typer.Option(help="A/B log: Parquet or CSV, one row per shown "
                                           "item (docs/abtest.md).")],
    schema: Annotated[Path | None, typer.Option(help="JSON file renaming the columns "
                                                     "(LogSchema fields).")] = None,
    unit: Annotated[str, typer.Option(help="session | record")] = "session",
    cov: Annotated[str, typer.Option(help="cluster (by consumer) | HC1")] = "cluster",
    out: Annotated[Path, typer.Option(help="Root of the reports.")] = Path("reports"),
) -> None:
    """Tables 11-15 and Figures 12-14 of your own A/B log; writes OUT/abtest/<stem>.md."""
    from deepprl.abtest.analysis import LogSchema
    from deepprl.abtest.report import analyse_file

    try:
        chosen = LogSchema.from_file(schema) if schema is not None else None
        path = analyse_file(log, out=out, schema=chosen, unit=unit, cov=cov,
                            command=" ".join(["deepprl", "abtest", "analyse", "--log", str(log),
                                              *(["--schema", str(schema)] if schema else []),
                                              "--unit", unit, "--cov", cov]))
    except (ValueError, OSError) as error:
        fail(str(error))
    typer.echo(str(path))

