"""Schema of an interaction log and the mapping file that describes a user's own log.

A mapping names the columns of a CSV/Parquet log and says how to bring each objective to
[0, 1]. It is a TOML (or JSON) file, for example::

    [columns]
    user = "user_id"
    item = "item_id"
    timestamp = "ts"              # optional: unix seconds, ISO-8601 text or a datetime
    reward = "rating"             # optional: defaults to the mean of the objectives
    user_features = ["age", "gender", "segment"]
    item_features = ["category"]
    context = ["device"]
    categorical = ["segment", "category"]   # integer codes: one-hot, not z-scored
    duplicates = "error"          # or "keep-last": rows repeating (user, item, timestamp)

    [reward_scale]                # optional: reward -> (x - min) / (max - min)
    min = 1
    max = 5

    [[objectives]]
    name = "relevance"
    column = "rel"
    normalise = "none"            # none: must already lie in [0, 1]

    [[objectives]]
    name = "watch"
    column = "watch_seconds"
    normalise = "minmax"          # minmax over the file, or "range" with min/max below
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NORMALISERS = ("none", "minmax", "range")
DUPLICATE_POLICIES = ("error", "keep-last")


class DataError(ValueError):
    """A log or mapping that cannot be used; the message names file, column and row."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective column and how it is brought to [0, 1]."""

    name: str
    """Name used in reports and JSON output."""
    column: str
    """Column of the log holding the raw value."""
    normalise: str = "none"
    """none (already in [0, 1]), minmax (over the file) or range (with min/max)."""
    min: float | None = None
    """Lower bound for normalise = range."""
    max: float | None = None
    """Upper bound for normalise = range."""


@dataclass(frozen=True)
class Mapping:
    """Which column plays which role in a log."""

    user: str
    """User id column."""
    item: str
    """Item id column."""
    objectives: tuple[ObjectiveSpec, ...]
    """Two or more objectives, all to be maximised."""
    timestamp: str | None = None
    """Unix seconds or datetime; without it, row order within a user is the time order."""
    reward: str | None = None
    """Reward column; without it the reward is the mean of the normalised objectives."""
    reward_min: float | None = None
    """Scale the reward by (x - reward_min) / (reward_max - reward_min) when both are set."""
    reward_max: float | None = None
    """See reward_min."""
    user_features: tuple[str, ...] = ()
    """Static user attributes (first value per user is used)."""
    item_features: tuple[str, ...] = ()
    """Static item attributes (first value per item is used)."""
    context: tuple[str, ...] = ()
    """Per-event context columns."""
    categorical: tuple[str, ...] = ()
    """Feature or context columns one-hot encoded even when numeric (integer codes)."""
    duplicates: str = "error"
    """Policy for rows repeating (user, item, timestamp): error or keep-last."""
    source: str = field(default="<mapping>", compare=False)
    """Where the mapping came from, for error messages."""

    def __post_init__(self) -> None:
        self._check_objectives()
        where = self.source
        if self.duplicates not in DUPLICATE_POLICIES:
            raise DataError(f"{where}: duplicates must be one of {DUPLICATE_POLICIES}, "
                            f"got {self.duplicates!r}")
        if (self.reward_min is None) != (self.reward_max is None) or (
            self.reward_min is not None and self.reward_max is not None
            and not (self.reward_max > self.reward_min
                     and math.isfinite(self.reward_max - self.reward_min))
        ):
            raise DataError(f"{where}: reward_scale needs both min and max, with min < max "
                            f"(both finite); got min = {self.reward_min}, "
                            f"max = {self.reward_max}")
        self._check_columns()

    def _check_objectives(self) -> None:
        where = self.source
        if len(self.objectives) < 2:
            raise DataError(f"{where}: a log needs at least 2 objectives, the mapping names "
                            f"{len(self.objectives)}")
        names = [o.name for o in self.objectives]
        dup_names = sorted({n for n in names if names.count(n) > 1})
        if dup_names:
            raise DataError(f"{where}: objective name {dup_names[0]!r} is used twice")
        for spec in self.objectives:
            if spec.normalise not in NORMALISERS:
                raise DataError(f"{where}: objective {spec.name!r}: normalise must be one of "
                                f"{NORMALISERS}, got {spec.normalise!r}")
            if spec.normalise == "range" and (
                spec.min is None or spec.max is None or not spec.max > spec.min
                or not math.isfinite(spec.max - spec.min)
            ):
                raise DataError(f"{where}: objective {spec.name!r}: normalise = 'range' needs "
                                f"min < max (both finite), got min = {spec.min}, "
                                f"max = {spec.max}")

    def _check_columns(self) -> None:
        """No column in two roles; categorical names only feature or context columns."""
        where = self.source
        seen: dict[str, str] = {}
        for role, column in self.roles():
            if column in seen:
                raise DataError(f"{where}: column {column!r} is named twice "
                                f"(as {seen[column]} and as {role})")
            seen[column] = role
        features = {*self.user_features, *self.item_features, *self.context}
        for column in self.categorical:
            if column not in features:
                raise DataError(f"{where}: columns.categorical names {column!r}, which is not "
                                f"a user feature, item feature or context column")

    def roles(self) -> list[tuple[str, str]]:
        """(role, column) for every column the mapping names."""
        pairs = [("user", self.user), ("item", self.item)]
        if self.timestamp:
            pairs.append(("timestamp", self.timestamp))
        if self.reward:
            pairs.append(("reward", self.reward))
        pairs += [(f"objective {o.name!r}", o.column) for o in self.objectives]
        pairs += [("user feature", c) for c in self.user_features]
        pairs += [("item feature", c) for c in self.item_features]
        pairs += [("context", c) for c in self.context]
        return pairs

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "columns": {
                "user": self.user, "item": self.item, "timestamp": self.timestamp,
                "reward": self.reward, "user_features": list(self.user_features),
                "item_features": list(self.item_features), "context": list(self.context),
                "duplicates": self.duplicates,
            },
            "objectives": [
                {k: v for k, v in vars(o).items() if v is not None} for o in self.objectives
            ],
        }
        if self.categorical:  # only when used: older runs' configs stay as they were
            out["columns"]["categorical"] = list(self.categorical)
        if self.reward_min is not None:
            out["reward_scale"] = {"min": self.reward_min, "max": self.reward_max}
        out["columns"] = {k: v for k, v in out["columns"].items() if v is not None}
        return out


_COLUMN_KEYS = {"user", "item", "timestamp", "reward", "user_features", "item_features",
                "context", "categorical", "duplicates"}
_OBJECTIVE_KEYS = {"name", "column", "normalise", "min", "max"}


def mapping_from_dict(raw: dict[str, Any], source: str = "<mapping>") -> Mapping:
    """Build a Mapping from parsed TOML/JSON, naming the offending key on error."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: the mapping must be a table/object")
    unknown = set(raw) - {"columns", "objectives", "reward_scale"}
    if unknown:
        raise DataError(f"{source}: unknown section {sorted(unknown)[0]!r}; expected "
                        f"[columns], [[objectives]] and optionally [reward_scale]")
    cols = raw.get("columns")
    if not isinstance(cols, dict):
        raise DataError(f"{source}: missing [columns] section")
    bad = set(cols) - _COLUMN_KEYS
    if bad:
        raise DataError(f"{source}: unknown key columns.{sorted(bad)[0]}; expected one of "
                        f"{sorted(_COLUMN_KEYS)}")
    for key in ("user", "item"):
        if not isinstance(cols.get(key), str):
            raise DataError(f"{source}: columns.{key} must name a column")
    specs = _objective_specs(raw.get("objectives"), source)
    scale = raw.get("reward_scale", {})
    if not isinstance(scale, dict) or set(scale) - {"min", "max"}:
        raise DataError(f"{source}: [reward_scale] takes min and max only, got {scale!r}")
    return Mapping(
        user=cols["user"], item=cols["item"], objectives=specs,
        timestamp=_opt_str(cols.get("timestamp"), f"{source}: columns.timestamp"),
        reward=_opt_str(cols.get("reward"), f"{source}: columns.reward"),
        reward_min=_opt_float(scale.get("min"), f"{source}: reward_scale.min"),
        reward_max=_opt_float(scale.get("max"), f"{source}: reward_scale.max"),
        user_features=_str_list(cols.get("user_features", []), f"{source}: columns.user_features"),
        item_features=_str_list(cols.get("item_features", []), f"{source}: columns.item_features"),
        context=_str_list(cols.get("context", []), f"{source}: columns.context"),
        categorical=_str_list(cols.get("categorical", []), f"{source}: columns.categorical"),
        duplicates=str(cols.get("duplicates", "error")), source=source,
    )


def _objective_specs(objs: Any, source: str) -> tuple[ObjectiveSpec, ...]:
    """The [[objectives]] list of a mapping, naming the offending entry on error."""
    if not isinstance(objs, list):
        raise DataError(f"{source}: missing [[objectives]] list")
    specs = []
    for i, obj in enumerate(objs):
        if not isinstance(obj, dict) or not isinstance(obj.get("column"), str):
            raise DataError(f"{source}: objectives[{i}] needs a 'column' string")
        extra = set(obj) - _OBJECTIVE_KEYS
        if extra:
            raise DataError(f"{source}: unknown key objectives[{i}].{sorted(extra)[0]}")
        if not isinstance(obj.get("name", ""), str):
            raise DataError(f"{source}: objectives[{i}].name must be a string, got "
                            f"{obj['name']!r}")
        specs.append(ObjectiveSpec(
            name=str(obj.get("name", obj["column"])), column=obj["column"],
            normalise=str(obj.get("normalise", "none")),
            min=_opt_float(obj.get("min"), f"{source}: objectives[{i}].min"),
            max=_opt_float(obj.get("max"), f"{source}: objectives[{i}].max"),
        ))
    return tuple(specs)


def read_mapping(path: str | Path) -> Mapping:
    """Read a TOML or JSON mapping file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mapping file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the mapping file: {err}") from err
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise DataError(f"{path}: cannot parse mapping: {err}") from err
    return mapping_from_dict(raw, source=str(path))


def _opt_float(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _opt_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"{where} must be a column name, got {value!r}")
    return value


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(
        isinstance(v, str) for v in value
    ):
        raise DataError(f"{where} must be a list of column names, got {value!r}")
    return tuple(value)
