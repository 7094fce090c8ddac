"""Feedback store: SQLite in WAL mode, one connection per thread, durable commits.

Every feedback event is one row, written in its own IMMEDIATE transaction with
synchronous=FULL: once POST /feedback has answered, the row survives a crash or restart.
Readers never block the writer (WAL). The store remembers the data fingerprint of the run
that created it and refuses to serve another log's model (item ids would not match).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    timestamp REAL NOT NULL,
    objectives TEXT,
    reward REAL,
    received_at REAL NOT NULL,
    model_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_user_time ON feedback (user_id, timestamp, id);
CREATE TABLE IF NOT EXISTS user_counts (user_id TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


class StoreError(ValueError):
    """A feedback store that cannot be opened, or that belongs to another log."""


@dataclass(frozen=True)
class FeedbackEvent:
    """One stored feedback event."""

    user_id: str
    item_id: str
    timestamp: float
    objectives: dict[str, float] | None = None
    reward: float | None = None


class FeedbackStore:
    """Per-user feedback histories in one SQLite file (thread-safe)."""

    def __init__(self, path: str | Path, *, fingerprint: str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch the feedback store to WAL mode "
                                 f"(journal mode {mode!r}); use a local file system")
            conn.executescript(_SCHEMA)
            self._check_meta(conn, fingerprint)
        except (sqlite3.Error, OSError) as err:
            self.close()
            raise StoreError(f"{self.path}: cannot open the feedback store: {err}. Pass "
                             f"--db PATH with a writable location") from err
        except StoreError:
            self.close()
            raise

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _check_meta(self, conn: sqlite3.Connection, fingerprint: str) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, value in (("schema_version", SCHEMA_VERSION),
                               ("data_fingerprint", fingerprint)):
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                             (key, value))
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if meta["schema_version"] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: feedback store format {meta['schema_version']}, "
                             f"this deepprl writes {SCHEMA_VERSION}")
        if meta["data_fingerprint"] != fingerprint:
            raise StoreError(f"{self.path}: this feedback store belongs to a model trained on "
                             f"other data (fingerprint {meta['data_fingerprint'][:12]}, the run "
                             f"has {fingerprint[:12]}); pass --db with another file")

    def add(self, event: FeedbackEvent, *, model_version: str) -> tuple[int, int]:
        """Store one event durably -> (row id, the user's feedback count after it)."""
        objectives = None if event.objectives is None else json.dumps(event.objectives)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO feedback (user_id, item_id, timestamp, objectives, reward, "
                "received_at, model_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.user_id, event.item_id, event.timestamp, objectives, event.reward,
                 time.time(), model_version))
            conn.execute("INSERT INTO user_counts (user_id, n) VALUES (?, 1) "
                         "ON CONFLICT (user_id) DO UPDATE SET n = n + 1", (event.user_id,))
            count = conn.execute("SELECT n FROM user_counts WHERE user_id = ?",
                                 (event.user_id,)).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(cur.lastrowid or 0), int(count)

    def recent(self, user_id: str, n: int) -> list[FeedbackEvent]:
        """The user's latest n events by (timestamp, arrival), oldest first."""
        rows = self._conn().execute(
            "SELECT item_id, timestamp, objectives, reward FROM feedback WHERE user_id = ? "
            "ORDER BY timestamp DESC, id DESC LIMIT ?", (user_id, n)).fetchall()
        return [FeedbackEvent(user_id=user_id, item_id=item, timestamp=ts,
                              objectives=None if obj is None else json.loads(obj),
                              reward=reward)
                for item, ts, obj, reward in reversed(rows)]

    def count(self, user_id: str) -> int:
        """Feedback events stored for the user (kept in the same transaction as the rows)."""
        row = self._conn().execute("SELECT n FROM user_counts WHERE user_id = ?",
                                   (user_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def items(self, user_id: str) -> set[str]:
        """Distinct item ids the user has fed back."""
        rows = self._conn().execute("SELECT DISTINCT item_id FROM feedback WHERE user_id = ?",
                                    (user_id,)).fetchall()
        return {r[0] for r in rows}

    def ping(self) -> None:
        self._conn().execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
