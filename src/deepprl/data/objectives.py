"""Choosing which of a dataset's objectives a run predicts (dataset option `objectives`).

A built-in loader computes every objective it knows (e.g. MovieLens: consistency, recency
and relevance = rating / 5) and keeps the subset asked for, in the order given; its valuer
answers counterfactual candidates in that same order. The default of each dataset is the
paper's pair, so runs and reports that never name the option are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from deepprl.data.interactions import Interactions, Valuer


def parse_objectives(value: str | Sequence[str], available: Sequence[str], *,
                     dataset: str) -> tuple[str, ...]:
    """'a,b,c' (or a sequence) -> ('a', 'b', 'c'): at least two distinct names of
    `available`; ValueError naming the dataset and the bad name otherwise."""
    names = tuple(n.strip() for n in value.split(",")) if isinstance(value, str) \
        else tuple(value)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"{dataset}: option 'objectives': unknown objective {unknown[0]!r}; "
                         f"expected names among {list(available)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{dataset}: option 'objectives' names an objective twice: "
                         f"{','.join(names)}")
    if len(names) < 2:
        raise ValueError(f"{dataset}: option 'objectives' needs at least two objectives, "
                         f"got {','.join(names) or 'none'}")
    return names


class SelectedValuer:
    """A valuer answering only some of its base's objectives, in a chosen order."""

    def __init__(self, base: Valuer, columns: Sequence[int]) -> None:
        self.base, self.columns = base, list(columns)
        # a fully observed world stays fully observed (deepprl.data.sequences reads these)
        for name in ("fully_observed", "candidate_sample"):
            if hasattr(base, name):
                setattr(self, name, getattr(base, name))

    def values(self, data: Interactions, events: np.ndarray, items: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        objectives, reward = self.base.values(data, events, items)  # [E, C, K_all], [E, C]
        return objectives[..., self.columns], reward


def select_objectives(data: Interactions, names: Sequence[str]) -> Interactions:
    """`data` with only the objectives `names` (checked by parse_objectives), in that order;
    `data` itself when they are already its objectives."""
    names = parse_objectives(names, data.objective_names, dataset=data.name)
    if names == data.objective_names:
        return data
    columns = [data.objective_names.index(n) for n in names]
    encoding = dict(data.encoding)
    if isinstance(encoding.get("objectives"), dict):
        encoding["objectives"] = {n: encoding["objectives"][n] for n in names
                                  if n in encoding["objectives"]}
    valuer = SelectedValuer(data.valuer, columns) if data.valuer is not None else None
    return replace(data, objective_names=names,
                   objectives=np.ascontiguousarray(data.objectives[:, columns]),
                   encoding=encoding, valuer=valuer)
