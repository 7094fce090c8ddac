"""Stage 1 from a Parquet log larger than memory: `deepprl fit-predictor --data X.parquet`.

Writes the predictor's weights (model.safetensors), config.json and metrics.json (one
record per epoch). Stage 2 and the offline evaluation read an in-memory log; run them with
`deepprl train` on a log (or a sample of users) that fits in memory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deepprl import rundir
from deepprl.artifacts import CONFIG_FILE, MODEL_FILE, build_model, write_json
from deepprl.config import RunConfig
from deepprl.data.stream import ParquetLog
from deepprl.io import save_safetensors
from deepprl.train.run import seed_everything
from deepprl.train.stage1 import Progress, fit_predictor_stream


def fit_predictor_file(config: RunConfig, data: str | Path, mapping: str | Path, out: str | Path,
                       *, batch_rows: int = 65_536, progress: Progress | None = None
                       ) -> dict[str, Any]:
    """Train the configured predictor on `data` read in record batches of `batch_rows`
    (every file written atomically, COMPLETE.json last)."""
    started = time.perf_counter()
    out = Path(out)
    seed_everything(config.seed)
    log = ParquetLog(data, mapping, batch_rows=batch_rows,
                     history_length=config.model.history_length)
    model = build_model(config, log.skeleton)
    records = fit_predictor_stream(model, log, config.train, seed=config.seed,
                                   progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / rundir.MARKER).unlink(missing_ok=True)  # a rerun's old marker: complete no more
    save_safetensors(out / MODEL_FILE, model.state_dict())
    write_json(out / CONFIG_FILE, config.to_dict())
    metrics = {"model": config.name, "data": str(data), "records": log.n_rows,
               "users": len(log.user_ids), "items": len(log.item_ids),
               "batch_rows": batch_rows, "stage1": records,
               "seconds": time.perf_counter() - started}
    write_json(out / "metrics.json", metrics)
    rundir.write_marker(out, config.to_dict())
    return metrics
