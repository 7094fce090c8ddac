"""deepprl export: a run's stage-1 model and weight policy as ONNX graphs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from deepprl.cli.common import app, err, fail


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="Run directory written by train (a weighted "
                                           "model, e.g. deepprl).")],
    out: Annotated[Path, typer.Option(help="Folder for the graphs and manifest.json "
                                           "(created; files of an earlier export replaced).")],
    format: Annotated[str, typer.Option(help="Export format; onnx is the one there is.")
                      ] = "onnx",
    as_json: Annotated[bool, typer.Option("--json", help="The manifest on stdout.")] = False,
) -> None:
    """model.onnx (history + candidates -> user state, y_hat), policy.onnx (state +
    context -> alpha), ids.json and manifest.json; checked against PyTorch on real inputs
    (docs/serving.md, "ONNX export")."""
    if format != "onnx":
        fail(f"--format {format!r}: the export format is 'onnx'")
    from deepprl.export.graphs import describe, export_run

    try:
        manifest = export_run(run, out)
    except ValueError as error:
        fail(str(error))
    except OSError as error:  # e.g. --out under a missing or read-only parent
        fail(f"--out {out}: cannot write the export: {error}")
    if as_json:
        sys.stdout.write(json.dumps(manifest) + "\n")
        return
    err.print(f"exported {run} to {out}: {describe(manifest)}", highlight=False,
              markup=False, soft_wrap=True)
