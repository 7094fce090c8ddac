"""deepprl evaluate | recommend | models | datasets: what a run or the registries hold."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deepprl.cli.common import (
    app,
    fail,
)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option(help="Run directory written by train.")],
    weights: Annotated[str, typer.Option(
        help="learned (the run's own ranking) | equal (its predictor, equal weights) | "
             "static (its predictor, best static weights on validation) | popularity | "
             "oracle (upper bound: rank by the true reward)")] = "learned",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Offline metrics of a run: mean true objectives and reward of the top-K."""
    from deepprl.eval.offline import evaluate_run

    try:
        result = evaluate_run(run, weights)
    except ValueError as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=Text(f"{run} ({result['weights']} weights, top-{result['k']})"))
    for name in result["objectives"]:
        table.add_column(Text(name), justify="right")
    table.add_column("reward", justify="right")
    table.add_row(*[f"{v:.4f}" for v in result["objectives"].values()],
                  f"{result['reward']:.4f}")
    Console().print(table)
    if "served" in result:
        Console().print(_served_line(result), highlight=False, markup=False)


def _served_line(result: dict[str, object]) -> str:
    """What the run serves after its pessimism check (deepprl.train.pessimism)."""
    check: dict[str, object] = result["policy_check"]  # type: ignore[assignment]

    def figure(key: str) -> str:
        value = check.get(key)
        return f"{value:+.4f}" if isinstance(value, float) else "n/a"
    figures = f"held-out gain {figure('gain')}, lower bound {figure('gain_lower_bound')}"
    if result["served"] == "static":
        alpha = ", ".join(f"{a:.2f}" for a in check.get("static_weights") or [])  # type: ignore[attr-defined]
        return f"learned policy fell back to static α ({alpha}) ({figures})"
    kept = " (kept: policy.fallback = none)" if check.get("verdict") == "static" else ""
    return f"learned policy served{kept} ({figures})"


@app.command()
def recommend(
    run: Annotated[Path, typer.Option(help="Run directory written by train.")],
    user: Annotated[str, typer.Option(help="User id, as in the log.")],
    k: Annotated[int, typer.Option(help="How many items.")] = 10,
    candidates: Annotated[str | None, typer.Option(help="Comma-separated item ids.")] = None,
    exclude_seen: Annotated[bool, typer.Option(help="Skip items the user has had.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Top-K for a user's next interaction, with the weights alpha and every y_hat (from the
    run directory alone: the training log is not read; from the run's ONNX export without
    importing torch where the run holds one)."""
    items = [c.strip() for c in candidates.split(",")] if candidates is not None else None
    try:
        result = _recommend(run, user, k=k, candidates=items, exclude_seen=exclude_seen)
    except ValueError as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    alpha: dict[str, float] = result["weights"] or {}  # type: ignore[assignment]
    weights = ", ".join(f"{n}={w:.3f}" for n, w in alpha.items()) or "none (item-level model)"
    Console().print(f"user {user}: weights {weights}", highlight=False, soft_wrap=True,
                    markup=False)
    table = Table()
    table.add_column("item")
    table.add_column("score", justify="right")
    names = list(alpha)
    for name in names:
        table.add_column(Text(f"ŷ {name}"), justify="right")
    for row in result["items"]:  # type: ignore[attr-defined]
        table.add_row(Text(row["item"]), f"{row['score']:.4f}",
                      *[f"{row['predicted'][n]:.4f}" for n in names])
    Console().print(table)


def _recommend(run: Path, user: str, *, k: int, candidates: list[str] | None,
               exclude_seen: bool) -> dict[str, object]:
    """The run's export in onnxruntime (deepprl.export.runtime: no torch) where it has one,
    else its PyTorch modules."""
    from deepprl.export.runtime import load_exported

    exported = load_exported(run)
    if exported is not None:
        return exported.recommend(user, k=k, candidates=candidates, exclude_seen=exclude_seen)
    import torch

    from deepprl.artifacts import load_serving_run

    # one user's forward pass is a few ms on one thread; a second one only waits on the
    # first (hundreds of ms on a busy machine), as in the service
    torch.set_num_threads(1)
    _, recommender = load_serving_run(run)
    return recommender.recommend(user, k=k, candidates=candidates, exclude_seen=exclude_seen)


@app.command()
def models() -> None:
    """List the registered models: DeepPRL, its variants and the baselines."""
    from deepprl.zoo import models as registry

    entries = registry()
    width = max(len(name) for name in entries)
    for name, entry in entries.items():
        typer.echo(f"{name:{width}s}  {entry.description}")


@app.command()
def datasets() -> None:
    """List the built-in datasets."""
    from deepprl.data.registry import DATASETS

    width = max(len(name) for name in DATASETS)
    for name, entry in DATASETS.items():
        typer.echo(f"{name:{width}s} {entry.description}")

