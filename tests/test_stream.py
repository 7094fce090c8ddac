"""Streaming a Parquet log: the same encoding as load_log, training from record batches,
and peak memory that does not grow with the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from deepprl.artifacts import build_model
from deepprl.config import ModelConfig, RunConfig, TrainConfig
from deepprl.data.generic import load_log
from deepprl.data.schema import DataError
from deepprl.data.sequences import history_index
from deepprl.data.stream import ParquetLog
from deepprl.train.stage1 import fit_predictor_stream

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _sorted_parquet(tmp_path: Path) -> Path:
    frame = pl.read_csv(EXAMPLES / "log.csv").sort(["user_id", "ts"])
    path = tmp_path / "log.parquet"
    frame.write_parquet(path, row_group_size=37)
    return path


def test_windows_encode_like_load_log(tmp_path: Path) -> None:
    path = _sorted_parquet(tmp_path)
    whole = load_log(path, EXAMPLES / "mapping.toml")
    log = ParquetLog(path, EXAMPLES / "mapping.toml", batch_rows=50, history_length=3)
    assert log.user_ids == whole.user_ids and log.item_ids == whole.item_ids
    np.testing.assert_array_equal(log.user_features, whole.user_features)
    windows = list(log.windows())
    assert len(windows) > 2
    cols = {name: np.concatenate([getattr(w.data, name)[w.carried :] for w in windows])
            for name in ("user", "item", "time", "objectives", "reward", "context")}
    for name, value in cols.items():
        np.testing.assert_allclose(value, getattr(whole, name), atol=1e-5, err_msg=name)
    # every event keeps its whole history across window boundaries
    full = history_index(whole, 3)
    offset = 0
    for w in windows:
        local = history_index(w.data, 3)[w.carried :]
        filled = (local >= 0).sum(1)
        n = w.data.n_events - w.carried
        np.testing.assert_array_equal(filled, (full[offset : offset + n] >= 0).sum(1))
        offset += n


def test_unsorted_log_is_refused(tmp_path: Path) -> None:
    frame = pl.read_csv(EXAMPLES / "log.csv").sort(["user_id", "ts"], descending=[True, False])
    path = tmp_path / "unsorted.parquet"
    frame.write_parquet(path)
    log_args = {"batch_rows": 1000}
    with pytest.raises(DataError, match="sorted by user"):
        ParquetLog(path, EXAMPLES / "mapping.toml", **log_args)


def test_predictor_trains_from_record_batches(tmp_path: Path) -> None:
    log = ParquetLog(_sorted_parquet(tmp_path), EXAMPLES / "mapping.toml", batch_rows=64)
    config = RunConfig(model=ModelConfig(hidden=16, item_dim=8, user_dim=8, context_dim=8),
                       train=TrainConfig(epochs=4, batch_size=32, lr=1e-2))
    model = build_model(config, log.skeleton)
    records = fit_predictor_stream(model, log, config.train, seed=0)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] < records[0]["loss"]


CHILD = """
import json, resource, sys
from deepprl.artifacts import build_model
from deepprl.config import ModelConfig, RunConfig, TrainConfig
from deepprl.data.stream import ParquetLog
from deepprl.train.stage1 import fit_predictor_stream
log = ParquetLog(sys.argv[1], sys.argv[2], batch_rows=20_000)
config = RunConfig(model=ModelConfig(encoder="mean-pool", predictor="shared-bottom",
                                     hidden=8, item_dim=4, user_dim=4, context_dim=4,
                                     tower_hidden=4),
                   train=TrainConfig(epochs=1, batch_size=4096))
fit_predictor_stream(build_model(config, log.skeleton), log, config.train, seed=0)
print(json.dumps({"rows": log.n_rows,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

MAPPING = """
[columns]
user = "u"
item = "i"
timestamp = "ts"
context = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]

[[objectives]]
name = "a"
column = "a"
normalise = "minmax"

[[objectives]]
name = "b"
column = "b"
"""


def _write_log(path: Path, rows: int) -> None:
    """A sorted log of `rows` events (500 users, 200 items, 8 numeric context columns),
    written in slices so that the writer itself stays small."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    per_user = rows // 500
    writer = None
    for lo in range(0, 500, 50):
        n = 50 * per_user
        rng = np.random.default_rng(lo)
        data = {"u": np.repeat(np.arange(lo, lo + 50), per_user),
                "i": rng.integers(0, 200, n), "ts": np.tile(np.arange(per_user) * 60, 50),
                "a": rng.random(n) * 10, "b": rng.random(n)}
        data.update({f"c{j}": rng.random(n) for j in range(8)})
        table = pa.table(data)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=20_000)
    assert writer is not None
    writer.close()


def test_peak_memory_stays_bounded_as_the_file_grows(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(MAPPING)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    peaks = {}
    for rows in (100_000, 1_000_000):
        path = tmp_path / f"log{rows}.parquet"
        _write_log(path, rows)
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "m.toml")],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["rows"] == rows
        peaks[rows] = out["peak_mb"]
    # loaded whole, 900,000 more events of 13 columns would add > 90 MB (8 bytes a value);
    # streamed, the peak stays within the noise of one window
    assert peaks[1_000_000] - peaks[100_000] < 40, peaks


def test_fit_predictor_command_streams_a_parquet_log(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepprl.cli import app

    path = _sorted_parquet(tmp_path)
    result = CliRunner().invoke(app, ["fit-predictor", "--data", str(path), "--mapping",
                                      str(EXAMPLES / "mapping.toml"), "--out",
                                      str(tmp_path / "fp"), "--batch-rows", "100",
                                      "--epochs", "1", "--set", "model.hidden=16"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["records"] == 3000 and summary["last_epoch"]["epoch"] == 1
    saved = json.loads((tmp_path / "fp" / "config.json").read_text())
    assert saved["dataset"]["stream"] is True and saved["model"]["hidden"] == 16
    assert (tmp_path / "fp" / "model.safetensors").is_file()
