"""Load any CSV or Parquet interaction log described by a mapping file."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from deepprl.data.encode import encode_log
from deepprl.data.interactions import Interactions
from deepprl.data.schema import DataError, Mapping, read_mapping


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV or Parquet file with polars; clear errors for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",",
                               infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataError(f"{path}: cannot read the file: {_first_paragraph(err)}") from err
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")


def _first_paragraph(err: Exception) -> str:
    """polars' message up to its first blank line (the rest suggests reader arguments that
    a command-line user cannot pass), on one line."""
    return " ".join(str(err).split("\n\n")[0].split())


def load_log(data_path: str | Path, mapping: Mapping | str | Path) -> Interactions:
    """Validate and encode a user-supplied log. Ground truth for candidates is the log itself."""
    if not isinstance(mapping, Mapping):
        mapping = read_mapping(mapping)
    frame = read_table(data_path)
    return encode_log(frame, mapping, source=str(data_path), name=Path(data_path).stem)
