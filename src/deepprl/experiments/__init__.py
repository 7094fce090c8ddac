"""The paper's experiments, each one command -> a report (`deepprl experiment NAME`).

An experiment is a function `run(ctx: Context) -> Report` registered here by name with the
datasets it applies to; the module is imported only when the experiment runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepprl.experiments.context import Context
from deepprl.report import Report


@dataclass(frozen=True)
class Experiment:
    description: str
    target: str
    """module:function of `run(ctx) -> Report`."""
    datasets: tuple[str, ...]
    """Datasets it applies to; the first is the default."""
    full_minutes: str
    """How long the full mode took on our 2-core machine (README, per dataset)."""
    dataset_options: bool = True
    """Takes --dataset-option (its runs load the data through the dataset's spec); False
    for the interactive studies, whose worlds are built otherwise."""

    def function(self) -> Callable[[Context], Report]:
        module, _, name = self.target.partition(":")
        fn: Callable[[Context], Report] = getattr(importlib.import_module(module), name)
        return fn


OFFLINE = ("simulator", "movielens-100k", "movielens-latest-small", "yelp-hin",
           "movielens-sim")

EXPERIMENTS: dict[str, Experiment] = {
    "table4": Experiment("Table 4: every method's objectives and reward, improvement over "
                         "the second best, significance", "deepprl.experiments.offline:table4",
                         OFFLINE, "see README"),
    "table5": Experiment("Table 5 + Figure 7: Pareto frontiers, convex-hull volume, "
                         "hypervolume and fraction of the oracle's",
                         "deepprl.experiments.offline:table5", OFFLINE, "see README"),
    "table6": Experiment("Table 6: the dynamic / contextual variants of DeepPRL",
                         "deepprl.experiments.offline:table6", OFFLINE, "see README"),
    "table8": Experiment("Table 8: the seven ablation variants (paper Table 7)",
                         "deepprl.experiments.offline:table8", OFFLINE, "see README"),
    "table13": Experiment("Table 13's offline rows: correlation between objectives among "
                          "the logged test events and among DeepPRL's top-K",
                          "deepprl.experiments.correlation:table13", OFFLINE, "see README"),
    "sparsity": Experiment("Tables 9-10: three nested subsets of rising sparsity",
                           "deepprl.experiments.offline:sparsity",
                           ("movielens-latest-small",), "see README"),
    "sensitivity": Experiment("Figure 9: sensitivity to gamma, tau and hidden units",
                              "deepprl.experiments.analyses:sensitivity",
                              ("simulator", "movielens-100k"), "see README"),
    "scalability": Experiment("Figure 10: training time against records, fitted exponent",
                              "deepprl.experiments.analyses:scalability", ("simulator",),
                              "see README"),
    "figure1": Experiment("Figure 1: per-user correlation between two objectives, and by "
                          "hour", "deepprl.experiments.analyses:figure1", OFFLINE,
                          "see README"),
    "figure2": Experiment("Figure 2: Shared-Bottom with and without the trade-off c_ui, "
                          "against the oracle frontier", "deepprl.experiments.analyses:figure2",
                          ("simulator",), "see README"),
    "figure8": Experiment("Figure 8: the Pareto front of single consumers (4 users chosen "
                          "by their true preference), DeepPRL and its Table-6 variants "
                          "against each user's own optimum",
                          "deepprl.experiments.figure8:figure8",
                          ("simulator", "movielens-sim"), "see README"),
    "abtest": Experiment("Paper §7: simulated online A/B test (MMoE static weights vs "
                         "DeepPRL, hash-randomised consumers), Tables 11-15, Figures 12-14",
                         "deepprl.experiments.online:abtest", ("abtest-sim",),
                         "10 (579 s)", dataset_options=False),
    "longterm": Experiment("Figure 11: long-term frontiers in an interactive world "
                           "(iterations 1, 10, 25, 50), convex-hull volume",
                           "deepprl.experiments.longterm:longterm",
                           ("simulator", "movielens-sim"),
                           "see README", dataset_options=False),
}


def run_experiment(name: str, ctx: Context) -> Path:
    """Run experiment `name`, write its report under ctx.out; return the Markdown path."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name]
    if ctx.dataset not in experiment.datasets:
        raise ValueError(f"experiment {name!r} applies to {list(experiment.datasets)}, "
                         f"not {ctx.dataset!r}")
    if ctx.options and not experiment.dataset_options:
        raise ValueError(f"experiment {name!r} builds its own world: it takes no "
                         f"--dataset-option (got {sorted(ctx.options)})")
    report = experiment.function()(ctx)
    return report.write(ctx.out)


__all__ = ["EXPERIMENTS", "Context", "Experiment", "Report", "run_experiment"]
