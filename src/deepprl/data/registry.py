"""Datasets by name, and rebuilding a run's data from the spec saved in its config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepprl.config import build
from deepprl.data import yelp
from deepprl.data.generic import load_log
from deepprl.data.interactions import Interactions
from deepprl.data.movielens import OBJECTIVES, PAPER_OBJECTIVES, load_movielens_100k
from deepprl.data.movielens_latest import SUBSET_USER_FRACTIONS, load_movielens_latest
from deepprl.data.objectives import parse_objectives
from deepprl.data.schema import mapping_from_dict
from deepprl.data.simulator import SimulatorConfig, load_simulator


def _simulator_config(options: dict[str, Any]) -> SimulatorConfig:
    names = {f.name for f in dataclasses.fields(SimulatorConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"simulator: unknown option {unknown[0]!r}; expected {sorted(names)}")
    try:  # build checks each value's type against the field's default (n_users=abc)
        return build(SimulatorConfig, options, "simulator")
    except ValueError as err:
        text = str(err)
        raise ValueError(text if text.startswith("simulator") else f"simulator: {text}") from err


def _simulator(**options: Any) -> Interactions:
    return load_simulator(_simulator_config(options))


def _movielens(path: str | None = None, objectives: str = ",".join(PAPER_OBJECTIVES)
               ) -> Interactions:
    return load_movielens_100k(path, objectives=objectives)


def _movielens_sim(objectives: str = ",".join(PAPER_OBJECTIVES)) -> Interactions:
    from deepprl.data.movielens_sim import load_movielens_sim  # fits its model on first use

    return load_movielens_sim(objectives)


@dataclass(frozen=True)
class Option:
    """One option a dataset accepts (--dataset-option NAME=VALUE)."""

    kind: type
    """int or str; a str option also takes a number (a folder named 2024)."""
    help: str
    """One line for error messages and docs."""
    choices: tuple[Any, ...] = ()
    """Allowed values; empty: any value of the kind."""
    minimum: int | None = None
    """Smallest allowed value of an int option."""
    is_path: bool = False
    """A folder: saved in the run's config as an absolute path."""
    names_of: tuple[str, ...] = ()
    """A comma-separated list of two or more distinct names of these (the `objectives`
    option), saved normalised ("a,b,c"); empty: not a list."""

    def check(self, dataset: str, name: str, value: Any) -> Any:
        """The value, normalised (a path made absolute); ValueError naming the option."""
        if self.kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, self.kind) or isinstance(value, bool):
            raise ValueError(f"{dataset}: option {name!r} must be {self.kind.__name__} "
                             f"({self.help}), got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"{dataset}: option {name!r} must be one of "
                             f"{list(self.choices)}, got {value!r}")
        if self.names_of:  # kind str, checked above
            return ",".join(parse_objectives(str(value), self.names_of, dataset=dataset))
        if self.minimum is not None and isinstance(value, int) and value < self.minimum:
            raise ValueError(f"{dataset}: option {name!r} must be >= {self.minimum}, "
                             f"got {value!r}")
        return str(Path(str(value)).expanduser().resolve()) if self.is_path else value


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: its loader, a one-line description and the options it takes."""

    load: Callable[..., Interactions]
    description: str
    options: dict[str, Option] = field(default_factory=dict)
    """The options it takes, by name."""
    check_all: Callable[[dict[str, Any]], object] | None = None
    """Checks the options as a whole instead (raising ValueError), where a config class
    already declares them (the simulator's SimulatorConfig)."""
    note: str = ""
    """A caveat every offline report on this dataset states (how its events are ordered,
    what it lacks); empty: none."""
    world: str = ""
    """The id of the interactive world its data come from or are calibrated on
    (deepprl.envs.ENVIRONMENTS); empty: none (no long-term study)."""

    def check(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """Options validated and normalised; ValueError on an unknown or bad one."""
        if self.check_all is not None:
            self.check_all(options)
            return dict(options)
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"{name}: unknown option {unknown[0]!r}; expected one of "
                             f"{sorted(self.options)}")
        return {k: self.options[k].check(name, k, v) for k, v in options.items()}


PATH = Option(str, "folder holding the dataset's files", is_path=True)
SEED = Option(int, "seed of the dataset's random draws")


def objectives_option(available: tuple[str, ...], default: tuple[str, ...]) -> Option:
    """The `objectives` option: which of `available` a run predicts, in order."""
    return Option(str, f"objectives predicted, two or more of {','.join(available)} in the "
                       f"order wanted (default {','.join(default)})", names_of=available)


MOVIELENS_OBJECTIVES = objectives_option(OBJECTIVES, PAPER_OBJECTIVES)

DATASETS: dict[str, Dataset] = {
    "simulator": Dataset(_simulator, "the paper's discrete-choice simulator (fully observed, "
                                     "oracle)", check_all=_simulator_config,
                         world="deepprl/Simulator-v0"),
    "movielens-100k": Dataset(_movielens, "bundled MovieLens-100K: consistency, recency "
                                          "(+ relevance); rating/5",
                              {"path": PATH, "objectives": MOVIELENS_OBJECTIVES}),
    "movielens-latest-small": Dataset(
        load_movielens_latest, "MovieLens latest-small (read from disk): consistency, "
                               "recency (+ relevance); rating/5; subset=1|2|3 for the "
                               "sparsity study",
        {"path": PATH, "seed": SEED, "objectives": MOVIELENS_OBJECTIVES,
         "subset": Option(int, "sparsity subset", choices=tuple(SUBSET_USER_FRACTIONS))}),
    "yelp-hin": Dataset(
        yelp.load_yelp, "Yelp HIN (read from disk, no timestamps): relevance, novelty "
                        "(+ rating); stars/5",
        {"path": PATH, "seed": Option(int, "seed of the event order and the user sample"),
         "objectives": objectives_option(yelp.OBJECTIVES, yelp.PAPER_OBJECTIVES),
         "users": Option(int, "number of users sampled", minimum=1)},
        note="Yelp-HIN has no timestamps: each user's events are in a seeded random order, "
             "so 'latest' means last in that order, and there is no clock context."),
    "movielens-sim": Dataset(_movielens_sim, "MovieLens-100K made fully observed: "
                             "calibrated ratings for every user x movie (the "
                             "MovieLensSim-v0 world); consistency, recency (+ relevance)",
                             {"objectives": MOVIELENS_OBJECTIVES},
                             world="deepprl/MovieLensSim-v0"),
}


def dataset_spec(name: str | None = None, *, data: str | None = None,
                 mapping: str | None = None, options: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The JSON-able recipe saved in a run, from CLI-style arguments."""
    if (name is None) == (data is None):
        raise ValueError("give either a dataset name (--dataset) or a file (--data with "
                         "--mapping)")
    if data is not None:
        if options:
            raise ValueError("dataset options apply to built-in datasets, not to --data")
        if mapping is None:
            raise ValueError("--data needs --mapping FILE (see README: 'Your own log')")
        from deepprl.data.schema import read_mapping

        return {"data": str(Path(data).resolve()), "mapping": read_mapping(mapping).to_dict()}
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    # fail now, not after training, on a bad option
    return {"name": name, **DATASETS[name].check(name, options or {})}


def load_dataset(spec: dict[str, Any]) -> Interactions:
    """Rebuild the data a spec describes."""
    if "data" in spec:
        return load_log(spec["data"], mapping_from_dict(spec["mapping"], source="run mapping"))
    name = spec.get("name")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    options = {k: v for k, v in spec.items() if k != "name"}
    return DATASETS[name].load(**options)
