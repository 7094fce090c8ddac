"""What the commands share: the Typer apps, error and progress output on stderr, and
parsing of KEY=VALUE options into a run's config."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # rich.progress is imported by the commands that train, not by recommend
    from rich.progress import TaskID

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Deep Pareto Reinforcement Learning for multi-objective recommendation.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (JSON on stdout).")
app.add_typer(bench_app, name="bench")
abtest_app = typer.Typer(no_args_is_help=True, help="Online A/B experiments (paper §7).")
app.add_typer(abtest_app, name="abtest")
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print `message` literally (no Rich markup: paths and TOML like [columns] stay as they
    are) and exit with status 2."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
              soft_wrap=True)
    raise typer.Exit(code=2)


class Bars:
    """Training progress on stderr: a rich bar per stage on a terminal; elsewhere (CI,
    nohup, a redirected log) train.log's progress lines, one per epoch, per few hundred
    policy steps and per phase, as they happen (deepprl.train.progress)."""

    def __init__(self, enabled: bool, terminal: bool | None = None) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        terminal = err.is_terminal if terminal is None else terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), console=err,
                                 disable=not (enabled and terminal))
        self.lines: logging.Handler | None = None
        if enabled and not terminal:
            self.lines = logging.StreamHandler(sys.stderr)  # flushed after every line
            self.lines.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.tasks: dict[str, TaskID] = {}

    # on the parent of "deepprl.train": a line reaches train.log (that logger's own file)
    # before it reaches stderr
    _LOGGER = "deepprl"

    def __enter__(self) -> Bars:
        self.progress.start()
        if self.lines is not None:
            logging.getLogger(self._LOGGER).addHandler(self.lines)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if self.lines is not None:
            logging.getLogger(self._LOGGER).removeHandler(self.lines)

    def __call__(self, stage: str, done: int, total: int, info: dict[str, float]) -> None:
        label = f"{stage} epoch {int(info['epoch'])}" if "epoch" in info else stage
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[label], completed=done)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> dict; values are parsed as JSON where they can be (numbers)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"options must look like KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def apply_settings(config: Any, settings: list[str]) -> Any:
    """--set SECTION.FIELD=VALUE overrides, e.g. policy.gamma=0.9 or model.hidden=32."""
    from deepprl.config import RunConfig

    raw = config.to_dict()
    for section_field, value in parse_options(settings).items():
        section, _, name = section_field.partition(".")
        if section not in ("model", "train", "policy", "eval") or not name:
            raise ValueError(f"--set needs SECTION.FIELD=VALUE with SECTION one of model, "
                             f"train, policy, eval; got {section_field!r}")
        raw[section][name] = value
    return RunConfig.from_dict(raw)


def run_config(dataset: str | None, data: Path | None, mapping: Path | None, seed: int,
                epochs: int | None, policy_steps: int | None, k: int | None,
                options: list[str] | None = None, settings: list[str] | None = None,
                model: str = "deepprl") -> Any:
    from deepprl.config import RunConfig
    from deepprl.data.registry import dataset_spec
    from deepprl.zoo import configure

    spec = dataset_spec(dataset, data=str(data) if data else None,
                        mapping=str(mapping) if mapping else None,
                        options=parse_options(options or []))
    config = configure(model, RunConfig(dataset=spec, seed=seed))
    if epochs is not None:
        if epochs < 1:
            raise ValueError("--epochs must be >= 1")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                       epochs=epochs))
    if policy_steps is not None:
        if policy_steps < 1:
            raise ValueError("--policy-steps must be >= 1")
        config = dataclasses.replace(config, policy=dataclasses.replace(config.policy,
                                                                        steps=policy_steps))
    if k is not None:
        if k < 1:
            raise ValueError("--k must be >= 1")
        config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, k=k))
    return apply_settings(config, settings or [])


def print_table(metrics: dict[str, Any], *, title: str,
                others: dict[str, dict[str, Any]] | None = None) -> None:
    """A run's methods (learned, equal, static, popularity, upper bound) as one table;
    `others` adds rows of other runs on the same test events (label -> their "learned"),
    before the upper bound."""
    model = metrics.get("model", "deepprl")
    own = "DeepPRL (learned weights)" if model == "deepprl" else f"{model} (its own ranking)"
    labels = {"learned": own, "equal": "same predictor, fixed equal weights",
              "static": "same predictor, best static weights (validation)",
              "popularity": "popularity", "oracle": "upper bound: rank by true reward"}
    results = {labels[m]: metrics[m] for m in labels if m in metrics and m != "oracle"}
    results |= others or {}
    if "oracle" in metrics:
        results[labels["oracle"]] = metrics["oracle"]
    names = list(next(iter(results.values()))["objectives"])
    table = Table(title=Text(title))
    table.add_column("method")
    for name in names:
        table.add_column(Text(name), justify="right")
    table.add_column("reward", justify="right")
    for label, m in results.items():
        table.add_row(label, *[f"{m['objectives'][n]:.4f}" for n in names],
                      f"{m['reward']:.4f}")
    Console().print(table)
    p = metrics["protocol"]
    excluded, total = p["excluded_events_with_at_most_k_candidates"], p["test_events"]
    line = (f"excluded {excluded} of {total} test events ({excluded / max(total, 1):.0%}) "
            f"with <= {p['k']} candidates (every ranking picks the same items there); "
            f"evaluated {p['evaluated_events']}, mean candidates {p['mean_candidates']:.1f}")
    if "test_mae" in metrics:
        mae = {n: round(v, 4) for n, v in metrics["test_mae"].items()}
        line += f"; prediction MAE on test events {json.dumps(mae)}"
    if "validation" in metrics:
        line += f"\n{metrics['validation']}"
    check = metrics.get("policy_check")
    if check is not None and check.get("checked"):
        bound = check["gain_lower_bound"]
        line += (f"\npolicy check on held-out users: gain {check['gain']:+.4f} over static "
                 f"α {[round(a, 2) for a in check['static_weights']]}, lower bound "
                 f"{'n/a' if bound is None else f'{bound:+.4f}'}; serving {check['served']}")
    Console().print(line, highlight=False, markup=False)

