"""Logs larger than memory: a Parquet log read in record batches, never loaded whole.

    log = ParquetLog("events.parquet", "mapping.toml", batch_rows=65_536)
    model = build_model(config, log.skeleton)
    fit_predictor_stream(model, log, config.train, seed=0)    # deepprl.train.stage1

Two passes over the file, both bounded in memory by the batch size and the number of
distinct users and items, not by the number of events:
1. One pass over the record batches collects what encoding needs globally: the user and
   item vocabularies, each user's and item's first-row features, objective min/max
   (normalise = "minmax"), mean/std of numeric context columns and the most frequent
   values of categorical ones. These give the same encoding as `load_log`.
2. `pyarrow.parquet` yields record batches (one row group in memory at a time); each
   becomes an Interactions window with the global ids and feature tables. The log must be
   sorted by (user, time), as a log exported per user is; the last L events of the
   batch's last user are carried into the next window, so every event sees its whole
   history.
Not done in streaming: the duplicate check of `load_log`, splits (stream the training
file; evaluate on a separate, smaller file) and stage 2 (it reads precomputed per-event
states, built from an in-memory log).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from deepprl.data.encode import (
    MAX_CATEGORIES,
    _entity_features,
    _normalise,
    _reward,
    _time_column,
    is_number,
    time_context,
    warn_constant,
)
from deepprl.data.interactions import Interactions
from deepprl.data.schema import DataError, Mapping, read_mapping

_ROW = "__row__"


@dataclass(frozen=True)
class Window:
    """One record batch as an encoded log; events [carried:] are new, the first `carried`
    are the previous batch's tail (history only)."""

    data: Interactions
    carried: int

    @property
    def events(self) -> np.ndarray:
        return np.arange(self.carried, self.data.n_events)


class ParquetLog:
    """A Parquet log (one file or a directory of files) streamed in record batches."""

    def __init__(self, path: str | Path, mapping: Mapping | str | Path, *,
                 batch_rows: int = 65_536, history_length: int = 10) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        self.path, self.source = Path(path), str(path)
        if not self.path.exists():
            raise DataError(f"{path}: data file not found")
        self.mapping = mapping if isinstance(mapping, Mapping) else read_mapping(mapping)
        self.batch_rows, self.history_length = batch_rows, history_length
        self.columns = sorted({c for _, c in self.mapping.roles()})
        self._scan_statistics()

    # -- pass 1: global vocabularies and statistics ---------------------------------------
    def _scan_statistics(self) -> None:
        """One pass over the record batches; what it keeps grows with the number of users,
        items and categories, never with the number of events."""
        m = self.mapping
        users: list[np.ndarray] = []
        items: list[np.ndarray] = []
        lo = np.full(len(m.objectives), np.inf)
        hi = np.full(len(m.objectives), -np.inf)
        numeric = {c: [0.0, 0.0, 0] for c in m.context}  # sum, sum of squares, count
        counts: dict[str, dict[str, int]] = {c: {} for c in m.context}
        firsts: dict[str, list[pl.DataFrame]] = {m.user: [], m.item: []}
        seen: dict[str, set[object]] = {m.user: set(), m.item: set()}
        self.n_rows = 0
        schema: dict[str, pl.DataType] = {}
        for frame in self._batches():
            self.n_rows += frame.height
            schema = dict(frame.schema)
            users.append(np.unique(frame[m.user].to_numpy()))
            items.append(np.unique(frame[m.item].to_numpy()))
            if len(users) > 64:  # keep the lists short: merge into one vocabulary
                users = [np.unique(np.concatenate(users))]
                items = [np.unique(np.concatenate(items))]
            for j, o in enumerate(m.objectives):
                v = frame[o.column].cast(pl.Float64).to_numpy()
                lo[j], hi[j] = min(lo[j], float(v.min())), max(hi[j], float(v.max()))
            _count_context(frame, m.context, m.categorical, numeric, counts)
            for key, columns in ((m.user, m.user_features), (m.item, m.item_features)):
                if columns:
                    _first_rows(frame, key, columns, firsts[key], seen[key])
        if self.n_rows == 0:
            raise DataError(f"{self.source}: the log is empty (no data rows)")
        self.user_vocab = np.unique(np.concatenate(users))
        self.item_vocab = np.unique(np.concatenate(items))
        for j, o in enumerate(m.objectives):
            if o.normalise == "minmax" and hi[j] == lo[j]:
                warn_constant(o, float(lo[j]), self.source)
        self.objective_specs = tuple(
            dataclasses.replace(o, normalise="range", min=float(lo[j]), max=float(hi[j]))
            if o.normalise == "minmax" and hi[j] > lo[j] else o
            for j, o in enumerate(m.objectives))
        self.context_stats = _context_stats(m, schema, numeric, counts)
        self.user_features, self.user_feature_names = self._entity_table(
            m.user, m.user_features, self.user_vocab, firsts[m.user])
        self.item_features, self.item_feature_names = self._entity_table(
            m.item, m.item_features, self.item_vocab, firsts[m.item])
        self.user_ids = tuple(str(u) for u in self.user_vocab)
        self.item_ids = tuple(str(i) for i in self.item_vocab)
        first_window = next(self.windows(), None)
        if first_window is None:
            raise DataError(f"{self.source}: no record batch could be read")
        self.skeleton = first_window.data  # shapes, feature tables and names for build_model

    def _entity_table(self, key: str, columns: tuple[str, ...], vocab: np.ndarray,
                      firsts: list[pl.DataFrame]) -> tuple[np.ndarray, tuple[str, ...]]:
        if not columns:
            return np.zeros((len(vocab) + 1, 0), dtype=np.float32), ()
        first = pl.concat(firsts, how="vertical_relaxed")
        index = np.searchsorted(vocab, first[key].to_numpy()).astype(np.int64) + 1
        return _entity_features(first, columns, index, len(vocab), self.source,
                                categorical=self.mapping.categorical)

    # -- pass 2: record batches as windows -------------------------------------------------
    def _files(self) -> list[Path]:
        files = sorted(self.path.glob("*.parquet")) if self.path.is_dir() else [self.path]
        if not files:
            raise DataError(f"{self.source}: no .parquet file in the directory")
        return files

    def _batches(self) -> Iterator[pl.DataFrame]:
        """Record batches of the mapped columns, file after file (in name order), row group
        after row group. pyarrow.parquet's batch reader holds one row group at a time; a
        pyarrow.dataset scanner over one file measured a peak growing with the file."""
        for file in self._files():
            reader = pq.ParquetFile(file, pre_buffer=False)
            names = reader.schema_arrow.names
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise DataError(f"{file}: column {missing[0]!r} is missing; columns "
                                f"present: {names}")
            for batch in reader.iter_batches(batch_size=self.batch_rows, columns=self.columns,
                                             use_threads=False):
                if batch.num_rows:
                    yield pl.from_arrow(batch)  # type: ignore[misc]

    def windows(self) -> Iterator[Window]:
        """Encoded windows in file order; memory: one record batch plus L carried rows."""
        m, L = self.mapping, self.history_length
        carry: pl.DataFrame | None = None
        last_user = -1
        for frame in self._batches():
            carried = 0 if carry is None else carry.height
            if carry is not None:
                frame = pl.concat([carry, frame], how="vertical_relaxed")
            frame = frame.with_row_index(_ROW, offset=1)
            frame = frame.with_columns(_time_column(frame, m, self.source).alias("__time__"))
            user = np.searchsorted(self.user_vocab, frame[m.user].to_numpy()) + 1
            time = frame["__time__"].to_numpy().astype(np.float64)
            new_user = np.r_[True, user[1:] != user[:-1]]
            if (np.diff(user) < 0).any() or user[carried] < last_user or \
                    (np.diff(time)[~new_user[1:]] < 0).any():
                raise DataError(f"{self.source}: streaming needs the log sorted by user, then "
                                f"time (sort it once, e.g. with polars sink_parquet)")
            last_user = int(user[-1])
            yield Window(data=self._encode(frame, user, time), carried=carried)
            tail = frame.filter(pl.col(m.user) == frame[m.user][-1]).tail(L)
            carry = tail.drop([_ROW, "__time__"])

    def _encode(self, frame: pl.DataFrame, user: np.ndarray, time: np.ndarray
                ) -> Interactions:
        m = self.mapping
        item = np.searchsorted(self.item_vocab, frame[m.item].to_numpy()).astype(np.int64) + 1
        objectives = np.stack([
            _normalise(frame[o.column].cast(pl.Float64).to_numpy(), o, self.source, frame[_ROW])
            if o.normalise != "minmax" else np.full(frame.height, 0.5)  # constant column
            for o in self.objective_specs], axis=1).astype(np.float32)
        ctx_time, ctx_time_names = time_context(user, time, has_clock=m.timestamp is not None)
        ctx_cols, ctx_names = self._context(frame)
        return Interactions(
            name=self.path.stem, objective_names=tuple(o.name for o in m.objectives),
            user=user.astype(np.int64), item=item, time=time, objectives=objectives,
            reward=_reward(frame, m, objectives, self.source),
            context=np.concatenate([ctx_time, ctx_cols], axis=1).astype(np.float32),
            user_features=self.user_features, item_features=self.item_features,
            user_ids=self.user_ids, item_ids=self.item_ids,
            context_names=ctx_time_names + ctx_names,
            user_feature_names=self.user_feature_names,
            item_feature_names=self.item_feature_names)

    def _context(self, frame: pl.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
        blocks: list[np.ndarray] = [np.zeros((frame.height, 0), dtype=np.float32)]
        names: list[str] = []
        for column, (kind, stat) in zip(self.mapping.context, self.context_stats,
                                        strict=True):
            if kind == "num":
                mean, std = cast(tuple[float, float], stat)
                values = frame[column].cast(pl.Float64).to_numpy()
                if not np.isfinite(values).all():
                    raise DataError(f"{self.source}: column {column!r} (feature) has a "
                                    f"missing or non-finite value")
                blocks.append(((values - mean) / std)[:, None])
                names.append(column)
            else:
                keep = np.asarray(stat)
                text = frame[column].cast(pl.String).fill_null("<null>").to_numpy()
                blocks.append((text[:, None] == keep[None, :]).astype(np.float32))
                names += [f"{column}={c}" for c in keep]
        return np.concatenate(blocks, axis=1).astype(np.float32), tuple(names)


def _context_stats(m: Mapping, schema: dict[str, pl.DataType],
                   numeric: dict[str, list[float]], counts: dict[str, dict[str, int]]
                   ) -> list[tuple[str, object]]:
    """Per context column, ("num", (mean, std)) or ("cat", the categories kept), from the
    sums and counts of _count_context."""
    stats: list[tuple[str, object]] = []
    for c in m.context:
        if is_number(schema[c], c, m.categorical):
            total, squares, n = numeric[c]
            mean = total / max(n, 1)
            std = max(squares / max(n, 1) - mean * mean, 0.0) ** 0.5
            stats.append(("num", (mean, std if std > 0 else 1.0)))
        else:  # most frequent first, ties by value (as load_log's np.unique order)
            ranked = sorted(counts[c].items(), key=lambda kv: (-kv[1], kv[0]))
            stats.append(("cat", np.array([v for v, _ in ranked][:MAX_CATEGORIES])))
    return stats


def _count_context(frame: pl.DataFrame, columns: tuple[str, ...],
                   categorical: tuple[str, ...], numeric: dict[str, list[float]],
                   counts: dict[str, dict[str, int]]) -> None:
    """Add one batch to the context statistics: sum, sum of squares and count of a numeric
    column, value counts of another (or of one the mapping declares categorical)."""
    for c in columns:
        if is_number(frame.schema[c], c, categorical):
            v = frame[c].cast(pl.Float64).to_numpy()
            acc = numeric[c]
            acc[0] += float(v.sum())
            acc[1] += float((v * v).sum())
            acc[2] += len(v)
        else:
            for value, n in frame[c].cast(pl.String).fill_null("<null>").value_counts(
                    ).iter_rows():
                counts[c][value] = counts[c].get(value, 0) + n


def _first_rows(frame: pl.DataFrame, key: str, columns: tuple[str, ...],
                firsts: list[pl.DataFrame], seen: set[object]) -> None:
    """Keep the first row of each entity (user or item) not seen in an earlier batch."""
    first = frame.select([key, *columns]).unique(subset=[key], keep="first",
                                                 maintain_order=True)
    new = [v not in seen for v in first[key].to_list()]
    first = first.filter(pl.Series(new, dtype=pl.Boolean))
    if first.height:
        firsts.append(first)
        seen.update(first[key].to_list())
