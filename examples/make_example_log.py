"""Write examples/log.csv: a small synthetic log in the shape of a user's own data
(video-style: a click-through objective in [0, 1] and watch seconds to be min-max scaled).
Regenerate with: .venv/bin/python examples/make_example_log.py"""

from pathlib import Path

import numpy as np
import polars as pl

rng = np.random.default_rng(7)
n_users, n_items, n = 60, 80, 3000
user = rng.integers(1, n_users + 1, n)
item = rng.integers(1, n_items + 1, n)
length = rng.uniform(30, 600, n_items + 1)  # seconds
taste = rng.uniform(0, 1, n_users + 1)
ts = 1_700_000_000 + np.sort(rng.integers(0, 30 * 86400, n))
click = np.clip(0.3 + 0.5 * taste[user] - 0.4 * length[item] / 600 + rng.normal(0, 0.1, n), 0, 1)
watch = length[item] * np.clip(0.2 + 0.6 * (1 - taste[user]) + rng.normal(0, 0.1, n), 0, 1)
frame = pl.DataFrame({
    "user_id": [f"u{u}" for u in user], "video_id": [f"v{i}" for i in item], "ts": ts,
    "ctr": click.round(4), "watch_seconds": watch.round(1),
    "rating": np.clip(np.round(1 + 4 * (0.5 * click + 0.5 * watch / 600) + rng.normal(0, 0.5, n)),
                      1, 5).astype(int),
    "device": rng.choice(["ios", "android", "web"], n),
    "age": rng.integers(16, 70, n_users + 1)[user],
})
frame = frame.unique(subset=["user_id", "video_id", "ts"], keep="first", maintain_order=True)
frame.write_csv(Path(__file__).with_name("log.csv"))
