"""deepprl demo: the main job (`make run`).

Per world, the paper's two-objective set and a three-objective one; in each table DeepPRL
against its own predictor under equal and best static weights, popularity, the best rating
model (DRN) and the upper bound, all on the same test events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deepprl.cli.common import app, err, fail, print_table

# (dataset, its option sets: the paper's default first, then three objectives, whether the
# option changes the world). On MovieLens `objectives` only picks the predicted columns of one
# log, and DRN learns from the reward alone: one DRN run serves both tables. The simulator's
# n_objectives builds another world (other rewards), so DRN is trained in each.
DEMO_WORLDS: tuple[tuple[str, tuple[dict[str, Any], ...], bool], ...] = (
    ("movielens-100k", ({}, {"objectives": "relevance,consistency,recency"}), False),
    ("simulator", ({}, {"n_objectives": 3}), True),
)
DRN_LABEL = "DRN (rating model, its own ranking)"


def run_label(name: str, options: dict[str, Any]) -> str:
    """Directory name of a demo run: the dataset, plus its objective count when not the
    paper's default."""
    if not options:
        return name
    k = options.get("n_objectives") or len(str(options["objectives"]).split(","))
    return f"{name}-{k}obj"


def demo_run(name: str, options: dict[str, Any], model: str, out: Path, seed: int
             ) -> dict[str, Any]:
    """One training of the demo (a task of deepprl.parallel: it may run in a worker process);
    its progress lines go to stderr prefixed with the run's directory name."""
    import logging
    import sys

    from deepprl.config import RunConfig
    from deepprl.data.registry import dataset_spec
    from deepprl.train.run import train_run

    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(logging.Formatter(f"%(asctime)s {out.name}: %(message)s"))
    root = logging.getLogger("deepprl")
    root.addHandler(lines)
    root.setLevel(logging.INFO)
    try:  # the demo's own directories: rerun, replaced
        config = RunConfig(name=model, dataset=dataset_spec(name, options=options), seed=seed)
        return train_run(config, out, overwrite=True)
    finally:
        root.removeHandler(lines)


def same_events(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two runs were evaluated on the same test events (a row of one may sit in the
    other's table)."""
    keys = ("test_events", "evaluated_events", "k")
    return all(a["protocol"][key] == b["protocol"][key] for key in keys)


def drn_run(out: Path, name: str, options: dict[str, Any],
            option_sets: tuple[dict[str, Any], ...], new_world: bool) -> Path:
    """The DRN run whose row sits in the table of (name, options): its own world's, or the
    widest objective set's where the option does not change the world."""
    return out / f"{run_label(name, options if new_world else option_sets[-1])}-drn"


def demo_tasks(out: Path, seed: int) -> list[dict[str, Any]]:
    """Every training of the demo, DRN's included: independent, longest first (so two lanes
    finish together). DRN is trained once per world (DEMO_WORLDS)."""
    tasks = []
    for name, option_sets, new_world in DEMO_WORLDS:
        for options in option_sets if new_world else option_sets[-1:]:
            tasks.append({"name": name, "options": options, "model": "drn",
                          "out": drn_run(out, name, options, option_sets, new_world),
                          "seed": seed})
        tasks += [{"name": name, "options": options, "model": "deepprl",
                   "out": out / run_label(name, options), "seed": seed}
                  for options in option_sets[::-1]]
    return tasks


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the runs go.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    executor: Annotated[str, typer.Option(
        help="processes (one training per core) | sequential")] = "processes",
) -> None:
    """The main job: DeepPRL on bundled MovieLens-100K and on the simulator, each with the
    paper's two objectives and with three, against equal and best static weights on its
    predictor, popularity, DRN and the upper bound (same test events)."""
    from deepprl.parallel import EXECUTORS, map_tasks

    if executor not in ("sequential", "processes"):
        fail(f"--executor {executor!r}: the demo runs on this machine, 'processes' or "
             f"'sequential' (of {EXECUTORS})")
    tasks = demo_tasks(out, seed)
    err.print(f"{len(tasks)} trainings on {executor}: "
              + ", ".join(str(t["out"]) for t in tasks), markup=False, highlight=False)
    results = dict(zip([t["out"] for t in tasks],
                       map_tasks(demo_run, tasks, executor=executor), strict=True))
    for name, option_sets, new_world in DEMO_WORLDS:
        for options in option_sets:
            label = run_label(name, options)
            ours = results[out / label]
            drn = drn_run(out, name, options, option_sets, new_world)
            if not same_events(ours, results[drn]):
                raise RuntimeError(f"{label}: DRN and DeepPRL were evaluated on different "
                                   "test events")
            p = ours["protocol"]
            print_table(ours, title=f"{label}: top-{p['k']} of {p['evaluated_events']} test "
                                    f"events (runs in {out / label}, {drn})",
                        others={DRN_LABEL: results[drn]["learned"]})
