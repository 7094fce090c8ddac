"""Command line: deepprl train | fit-predictor | demo | evaluate | recommend | export | diagnose |
models | datasets | experiment | report | serve | bench | abtest analyse | update.

One module per group of commands; importing a module registers its commands on the app,
in the order `deepprl --help` lists them.
"""

from __future__ import annotations

import importlib

from deepprl.cli.common import app

for _group in ("training", "demo", "lookup", "exporting", "diagnosis", "experiments",
               "serving", "updating"):
    importlib.import_module(f"deepprl.cli.{_group}")


def main() -> None:
    app()


__all__ = ["app", "main"]
