"""Validate a raw log against its Mapping and encode it into Interactions.

Row numbers in errors count data rows from 1 (the header is not a row).
"""

from __future__ import annotations

import difflib
import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from deepprl.data.clock import time_context
from deepprl.data.interactions import Interactions, Valuer
from deepprl.data.schema import DataError, Mapping, ObjectiveSpec

MAX_CATEGORIES = 32  # one-hot width cap per categorical feature; rarer values are all-zero
MAX_MAGNITUDE = 1e15
"""Largest |value| of a reward, raw objective or numeric feature: beyond it float32 means
(and the squares of a z-score) overflow or lose every digit, so such a value is refused."""
TIME_RANGE = (-62_135_596_800.0, 253_402_300_799.0)
"""Unix seconds of 0001-01-01 and 9999-12-31: the timestamps a clock can mean."""
_ROW = "__row__"
log = logging.getLogger("deepprl.data")


def encode_log(frame: pl.DataFrame, mapping: Mapping, *, source: str, name: str,
               valuer: Valuer | None = None) -> Interactions:
    """Validate `frame` (one row per interaction) and return the encoded, sorted log."""
    frame = validate(frame, mapping, source)
    frame = frame.sort([mapping.user, "__time__", _ROW])

    user_raw = frame[mapping.user].to_numpy()
    item_raw = frame[mapping.item].to_numpy()
    user_ids, user = np.unique(user_raw, return_inverse=True)
    item_ids, item = np.unique(item_raw, return_inverse=True)
    user, item = user.astype(np.int64) + 1, item.astype(np.int64) + 1
    time = frame["__time__"].to_numpy().astype(np.float64)

    fitted: dict[str, Any] = {"objectives": {}, "context": {}, "user_features": {},
                              "item_features": {}, "clock": mapping.timestamp is not None,
                              "reward_scale": [mapping.reward_min, mapping.reward_max]}
    objectives = np.stack([
        _normalise(frame[o.column].cast(pl.Float64).to_numpy(), o, source, frame[_ROW],
                   fitted["objectives"])
        for o in mapping.objectives
    ], axis=1).astype(np.float32)
    reward = _reward(frame, mapping, objectives, source)

    ctx_time, ctx_time_names = time_context(user, time, has_clock=mapping.timestamp is not None)
    cats = mapping.categorical
    ctx_cols, ctx_col_names = feature_matrix(frame, mapping.context, source,
                                             fitted["context"], categorical=cats)
    user_feats, user_feat_names = _entity_features(frame, mapping.user_features, user,
                                                   len(user_ids), source,
                                                   fitted["user_features"], categorical=cats)
    item_feats, item_feat_names = _entity_features(frame, mapping.item_features, item,
                                                   len(item_ids), source,
                                                   fitted["item_features"], categorical=cats)
    return Interactions(
        name=name, objective_names=tuple(o.name for o in mapping.objectives),
        user=user, item=item, time=time, objectives=objectives, reward=reward,
        context=np.concatenate([ctx_time, ctx_cols], axis=1).astype(np.float32),
        user_features=user_feats, item_features=item_feats,
        user_ids=tuple(str(u) for u in user_ids), item_ids=tuple(str(i) for i in item_ids),
        context_names=ctx_time_names + ctx_col_names,
        user_feature_names=user_feat_names, item_feature_names=item_feat_names,
        valuer=valuer, encoding=fitted, source=source,
    )


def validate(frame: pl.DataFrame, mapping: Mapping, source: str) -> pl.DataFrame:
    """Check columns, dtypes, values and duplicates; add __row__ and __time__ columns."""
    if frame.height == 0:
        raise DataError(f"{source}: the log is empty (no data rows)")
    for role, column in mapping.roles():
        if column not in frame.columns:
            near = difflib.get_close_matches(column, frame.columns, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise DataError(f"{source}: column {column!r} ({role}) is missing{hint} "
                            f"Columns present: {frame.columns}")
    frame = frame.with_row_index(_ROW, offset=1)
    for role, column in (("user", mapping.user), ("item", mapping.item)):
        _no_nulls(frame, column, role, source)
    numeric = [(f"objective {o.name!r}", o.column) for o in mapping.objectives]
    if mapping.reward:
        numeric.append(("reward", mapping.reward))
    for role, column in numeric:
        _finite_numeric(frame, column, role, source)
    frame = frame.with_columns(_time_column(frame, mapping, source).alias("__time__"))
    return _duplicates(frame, mapping, source)


def _no_nulls(frame: pl.DataFrame, column: str, role: str, source: str) -> None:
    nulls = frame.filter(pl.col(column).is_null())
    if nulls.height:
        raise DataError(f"{source}: column {column!r} ({role}) is empty at row "
                        f"{nulls[_ROW][0]}")


def _finite_numeric(frame: pl.DataFrame, column: str, role: str, source: str,
                    bound: float | None = MAX_MAGNITUDE) -> None:
    dtype = frame.schema[column]
    if not dtype.is_numeric() or dtype == pl.Boolean:
        raise DataError(f"{source}: column {column!r} ({role}) must be numeric, "
                        f"found {dtype}")
    _no_nulls(frame, column, role, source)
    values = frame[column].cast(pl.Float64).to_numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError(f"{source}: column {column!r} ({role}) has a non-finite value "
                        f"({values[bad[0]]}) at row {frame[_ROW][int(bad[0])]}")
    if bound is not None:
        big = np.flatnonzero(np.abs(values) > bound)
        if big.size:
            raise DataError(f"{source}: column {column!r} ({role}) has value "
                            f"{values[big[0]]:g} at row {frame[_ROW][int(big[0])]}, beyond "
                            f"±{bound:g}: rescale the column (e.g. other units)")


def _time_column(frame: pl.DataFrame, mapping: Mapping, source: str) -> pl.Series:
    if mapping.timestamp is None:
        return pl.Series("__time__", np.arange(frame.height, dtype=np.float64))
    column = mapping.timestamp
    dtype = frame.schema[column]
    _no_nulls(frame, column, "timestamp", source)
    if dtype in (pl.Date,) or isinstance(dtype, pl.Datetime):
        seconds = frame[column].cast(pl.Datetime("us")).dt.epoch("s")
        return seconds.cast(pl.Float64)
    if dtype == pl.String:
        return _parse_datetimes(frame, column, source)
    if dtype.is_numeric() and dtype != pl.Boolean:
        _finite_numeric(frame, column, "timestamp", source, bound=None)
        values = frame[column].cast(pl.Float64).to_numpy()
        bad = np.flatnonzero((values < TIME_RANGE[0]) | (values > TIME_RANGE[1]))
        if bad.size:
            raise DataError(f"{source}: column {column!r} (timestamp) has value "
                            f"{values[bad[0]]:g} at row {frame[_ROW][int(bad[0])]}, outside "
                            f"the unix seconds of years 1-9999 (milliseconds? divide by "
                            f"1000)")
        return frame[column].cast(pl.Float64)
    raise DataError(f"{source}: column {column!r} (timestamp) must be unix seconds, an "
                    f"ISO-8601 datetime or a datetime, found {dtype}")


def _parse_datetimes(frame: pl.DataFrame, column: str, source: str) -> pl.Series:
    """ISO-8601 text (2024-01-31, 2024-01-31T12:00:00, with Z or +02:00) -> unix seconds;
    text without an offset is read as UTC. polars parses the column's format in bulk; values
    in another ISO-8601 format than the first one's go through datetime.fromisoformat."""
    text = frame[column]
    try:
        seconds = text.str.to_datetime(strict=False, time_unit="us").dt.epoch("s")
    except pl.exceptions.PolarsError:  # the first value fixes no format polars knows
        seconds = pl.Series(column, [None] * frame.height, dtype=pl.Int64)
    values = seconds.cast(pl.Float64).to_numpy().copy()
    missing = np.flatnonzero(np.isnan(values))
    for at in missing:
        parsed = _iso_seconds(text[int(at)])
        if parsed is None:
            raise DataError(f"{source}: column {column!r} (timestamp) has {text[int(at)]!r} at "
                            f"row {frame[_ROW][int(at)]}: not an ISO-8601 datetime (e.g. "
                            f"2024-01-31, 2024-01-31T12:00:00 or 2024-01-31T12:00:00+02:00) "
                            f"nor unix seconds")
        values[at] = parsed
    return pl.Series("__time__", values)


def _iso_seconds(value: str) -> float | None:
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return float(int(stamp.timestamp()))  # whole seconds, as polars' epoch("s")


def _duplicates(frame: pl.DataFrame, mapping: Mapping, source: str) -> pl.DataFrame:
    key = [mapping.user, mapping.item, "__time__"]
    dup = frame.filter(pl.struct(key).is_duplicated())
    if dup.height == 0:
        return frame
    if mapping.duplicates == "keep-last":
        return frame.unique(subset=key, keep="last", maintain_order=True)
    stamp = pl.col(mapping.timestamp or "__time__").first().alias("__stamp__")
    first = dup.group_by(key, maintain_order=True).agg(stamp, pl.col(_ROW)).row(0)
    rows = first[-1]
    raise DataError(f"{source}: rows {rows[0]} and {rows[1]} repeat the same (user, item, "
                    f"timestamp) = ({first[0]!r}, {first[1]!r}, {first[-2]!r}); set duplicates = "
                    f"\"keep-last\" in the mapping to keep the last of such rows")


def _normalise(values: np.ndarray, spec: ObjectiveSpec, source: str, rows: pl.Series,
               fitted: dict[str, Any] | None = None) -> np.ndarray:
    """Objective values scaled to [0, 1]; the scale used goes into `fitted[spec.name]`."""
    if spec.normalise == "minmax":
        lo, hi = float(values.min()), float(values.max())
        if fitted is not None:
            fitted[spec.name] = {"normalise": "minmax", "min": lo, "max": hi}
        if hi > lo:
            return (values - lo) / (hi - lo)
        warn_constant(spec, lo, source)
        return np.full_like(values, 0.5)
    lo, hi = (0.0, 1.0) if spec.normalise == "none" else (float(spec.min), float(spec.max))  # type: ignore[arg-type]
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        how = ("objectives must lie in [0, 1] with normalise = 'none'; use 'minmax' or "
               "'range'" if spec.normalise == "none" else f"outside its range [{lo}, {hi}]")
        raise DataError(f"{source}: column {spec.column!r} (objective {spec.name!r}) has "
                        f"value {values[bad[0]]} at row {rows[int(bad[0])]}: {how}")
    if fitted is not None:
        fitted[spec.name] = {"normalise": spec.normalise, "min": lo, "max": hi}
    return (values - lo) / (hi - lo)


def warn_constant(spec: ObjectiveSpec, value: float, source: str) -> None:
    log.warning("%s: column %r (objective %r) is constant (%g) under normalise = 'minmax': "
                "every event gets 0.5, so this objective cannot tell items apart",
                source, spec.column, spec.name, value)


def _reward(frame: pl.DataFrame, mapping: Mapping, objectives: np.ndarray, source: str
            ) -> np.ndarray:
    if mapping.reward is None:
        return objectives.mean(axis=1).astype(np.float32)
    values = frame[mapping.reward].cast(pl.Float64).to_numpy()
    if mapping.reward_min is not None and mapping.reward_max is not None:
        lo, hi = mapping.reward_min, mapping.reward_max
        bad = np.flatnonzero((values < lo) | (values > hi))
        if bad.size:
            raise DataError(f"{source}: column {mapping.reward!r} (reward) has value "
                            f"{values[bad[0]]:g} at row {frame[_ROW][int(bad[0])]}, outside "
                            f"[reward_scale] min = {lo:g}, max = {hi:g}")
        values = (values - lo) / (hi - lo)
    return values.astype(np.float32)


def is_number(dtype: pl.DataType, column: str, categorical: tuple[str, ...]) -> bool:
    """Whether a feature column is z-scored (numeric, not declared categorical) rather than
    one-hot encoded."""
    return dtype.is_numeric() and dtype != pl.Boolean and column not in categorical


def feature_matrix(frame: pl.DataFrame, columns: tuple[str, ...], source: str,
                   fitted: dict[str, Any] | None = None, *,
                   categorical: tuple[str, ...] = ()) -> tuple[np.ndarray, tuple[str, ...]]:
    """Numeric columns are z-scored; other columns, and those named in `categorical`
    (integer codes), are one-hot (MAX_CATEGORIES cap). The statistics (mean and std, or
    the categories kept) go into `fitted[column]`."""
    fitted = {} if fitted is None else fitted
    blocks: list[np.ndarray] = [np.zeros((frame.height, 0), dtype=np.float32)]
    names: list[str] = []
    for column in columns:
        series = frame[column]
        if is_number(series.dtype, column, categorical):
            values = series.cast(pl.Float64).to_numpy()
            bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > MAX_MAGNITUDE))
            if bad.size:
                row = frame[_ROW][int(bad[0])] if _ROW in frame.columns else int(bad[0]) + 1
                what = ("a missing or non-finite value" if not np.isfinite(values[bad[0]])
                        else f"value {values[bad[0]]:g}, beyond ±{MAX_MAGNITUDE:g},")
                raise DataError(f"{source}: column {column!r} (feature) has {what} at row "
                                f"{row}")
            mean, std = float(values.mean()), float(values.std())
            std = std if std > 0 else 1.0
            blocks.append(((values - mean) / std)[:, None])
            names.append(column)
            fitted[column] = {"kind": "zscore", "mean": mean, "std": std}
        else:
            text = series.cast(pl.String).fill_null("<null>").to_numpy()
            cats, counts = np.unique(text, return_counts=True)
            keep = cats[np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]]
            blocks.append((text[:, None] == keep[None, :]).astype(np.float32))
            names += [f"{column}={c}" for c in keep]
            fitted[column] = {"kind": "onehot", "categories": [str(c) for c in keep]}
    return np.concatenate(blocks, axis=1).astype(np.float32), tuple(names)


def _entity_features(frame: pl.DataFrame, columns: tuple[str, ...], index: np.ndarray,
                     n: int, source: str, fitted: dict[str, Any] | None = None, *,
                     categorical: tuple[str, ...] = ()
                     ) -> tuple[np.ndarray, tuple[str, ...]]:
    """[n + 1, F] table of static features from each entity's first row (standardised over
    entities, not events, so active users weigh no more than others); row 0 is zeros."""
    first = np.unique(index, return_index=True)[1]
    rows, names = feature_matrix(frame[first], columns, source, fitted,
                                 categorical=categorical)
    table = np.zeros((n + 1, rows.shape[1]), dtype=np.float32)
    table[index[first]] = rows
    return table, names
