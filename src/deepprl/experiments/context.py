"""How an experiment is run: on which data, at which size, where its results go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Context:
    """How an experiment is run: on which data, at which size, where results go."""

    dataset: str
    quick: bool = False
    """Tiny sizes, for CI: the code path of the full mode, not its numbers."""
    seeds: int | None = None
    """Repetitions (seeds / network initialisations); None = the experiment's default."""
    folds: int = 0
    """0: temporal hold-out; F >= 3: every fold of a time-stratified F-fold split, each
    repeated over the seeds (the paper's 5-fold x 10 runs is --folds 5 --seeds 10)."""
    out: Path = Path("reports")
    """Root of the reports; an experiment writes under out/<experiment>/."""
    runs: Path = Path("runs/experiments")
    """Cache of trained runs, shared by experiments (a run is reused when its config
    matches)."""
    executor: str = "sequential"
    """deepprl.parallel executor for independent trainings."""
    address: str | None = None
    """Address of an existing cluster for a distributed executor."""
    command: str = ""
    """The command line that made the report (written at its top)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Dataset options (--dataset-option), e.g. {"objectives": "relevance,consistency,
    recency"}; checked by deepprl.data.registry.dataset_spec."""

    @property
    def label(self) -> str:
        """The report's name: the dataset, then its options, e.g.
        movielens-100k-objectives-relevance-consistency-recency."""
        parts = [self.dataset, *(f"{k}-{v}" for k, v in sorted(self.options.items()))]
        return "-".join(parts).replace(",", "-").replace("/", "-").replace(" ", "")

    def n_seeds(self, full: int, quick: int = 1) -> int:
        return self.seeds if self.seeds is not None else (quick if self.quick else full)
