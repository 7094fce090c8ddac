"""Feedback store: SQLite in WAL mode, one connection per thread, durable commits.

Every feedback event is one row, written in its own IMMEDIATE transaction with
synchronous=FULL: once POST /feedback has answered, the row survives a crash or restart.
Readers never block the writer (WAL). The store remembers the data fingerprint of the run
that created it and refuses to serve another log's model (item ids would not match).

The same transaction records the event's idempotency key, if any (a primary key: one event
per key, ever), and enforces the retention bounds. Tables added since format 1 are created
on open (CREATE ... IF NOT EXISTS), so older stores open unchanged.
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
CREATE INDEX IF NOT EXISTS feedback_user_arrival ON feedback (user_id, id);
CREATE INDEX IF NOT EXISTS feedback_received ON feedback (received_at);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request_digest TEXT NOT NULL,
    feedback_id INTEGER NOT NULL,
    feedback_events INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_feedback ON idempotency (feedback_id);
"""


class StoreError(ValueError):
    """A feedback store that cannot be opened, or that belongs to another log."""


class KeyReuseError(ValueError):
    """An idempotency key already used for a different request."""

    def __init__(self, key: str, feedback_id: int) -> None:
        super().__init__(f"already used for a different request (stored as event "
                         f"{feedback_id}); use a new key for a new event")
        self.key, self.feedback_id = key, feedback_id


@dataclass(frozen=True)
class Retention:
    """How much feedback the store keeps (None: no bound)."""

    max_events_per_user: int | None = None
    """The most recently received events kept per user."""
    max_age_s: float | None = None
    """Events received longer ago than this are deleted."""


@dataclass(frozen=True)
class Stored:
    """The acknowledgement of a stored event: its row, time and the user's count then."""

    id: int
    timestamp: float
    feedback_events: int
    replayed: bool = False
    """True when the idempotency key was already stored: nothing new was written."""


@dataclass(frozen=True)
class FeedbackEvent:
    """One stored feedback event."""

    user_id: str
    item_id: str
    timestamp: float
    objectives: dict[str, float] | None = None
    reward: float | None = None


@dataclass(frozen=True)
class StoredEvent:
    """A stored row as an online update reads it (FeedbackStore.since)."""

    id: int
    event: FeedbackEvent
    model_version: str
    """The version that was serving when the event was stored."""


class FeedbackStore:
    """Per-user feedback histories in one SQLite file (thread-safe)."""

    def __init__(self, path: str | Path, *, fingerprint: str) -> None:
        self.path, self.fingerprint = Path(path), fingerprint
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

    def add(self, event: FeedbackEvent, *, model_version: str,
            key: tuple[str, str] | None = None, retention: Retention | None = None
            ) -> Stored:
        """Store one event durably. `key` = (idempotency key, digest of the request): when
        the key is already stored, nothing is written and the original acknowledgement comes
        back (KeyReuseError if its digest differs). Retention is enforced in the same
        transaction."""
        objectives = None if event.objectives is None else json.dumps(event.objectives)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            prior = self._replay(conn, *key) if key is not None else None
            if prior is not None:
                conn.execute("COMMIT")
                return prior
            now = time.time()
            cur = conn.execute(
                "INSERT INTO feedback (user_id, item_id, timestamp, objectives, reward, "
                "received_at, model_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.user_id, event.item_id, event.timestamp, objectives, event.reward,
                 now, model_version))
            row = int(cur.lastrowid or 0)
            conn.execute("INSERT INTO user_counts (user_id, n) VALUES (?, 1) "
                         "ON CONFLICT (user_id) DO UPDATE SET n = n + 1", (event.user_id,))
            if retention is not None:
                _enforce(conn, retention, event.user_id, now)
            count = conn.execute("SELECT n FROM user_counts WHERE user_id = ?",
                                 (event.user_id,)).fetchone()[0]
            if key is not None:
                conn.execute("INSERT INTO idempotency (key, request_digest, feedback_id, "
                             "feedback_events) VALUES (?, ?, ?, ?)", (*key, row, count))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Stored(id=row, timestamp=event.timestamp, feedback_events=int(count))

    def replay(self, key: str, digest: str) -> Stored | None:
        """The acknowledgement stored under an idempotency key, None if the key is new
        (KeyReuseError if it was used for a request with another digest)."""
        return self._replay(self._conn(), key, digest)

    @staticmethod
    def _replay(conn: sqlite3.Connection, key: str, digest: str) -> Stored | None:
        row = conn.execute(
            "SELECT i.request_digest, i.feedback_id, i.feedback_events, f.timestamp "
            "FROM idempotency i JOIN feedback f ON f.id = i.feedback_id WHERE i.key = ?",
            (key,)).fetchone()
        if row is None:
            return None
        if row[0] != digest:
            raise KeyReuseError(key, int(row[1]))
        return Stored(id=int(row[1]), timestamp=float(row[3]), feedback_events=int(row[2]),
                      replayed=True)

    def recent(self, user_id: str, n: int) -> list[FeedbackEvent]:
        """The user's latest n events by (timestamp, arrival), oldest first."""
        rows = self._conn().execute(
            "SELECT item_id, timestamp, objectives, reward FROM feedback WHERE user_id = ? "
            "ORDER BY timestamp DESC, id DESC LIMIT ?", (user_id, n)).fetchall()
        return [FeedbackEvent(user_id=user_id, item_id=item, timestamp=ts,
                              objectives=None if obj is None else json.loads(obj),
                              reward=reward)
                for item, ts, obj, reward in reversed(rows)]

    def since(self, after_id: int = 0) -> list[StoredEvent]:
        """Every stored event with a row id above `after_id`, in arrival order."""
        rows = self._conn().execute(
            "SELECT id, user_id, item_id, timestamp, objectives, reward, model_version "
            "FROM feedback WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        return [StoredEvent(id=int(row), model_version=version, event=FeedbackEvent(
                    user_id=user, item_id=item, timestamp=ts, reward=reward,
                    objectives=None if obj is None else json.loads(obj)))
                for row, user, item, ts, obj, reward, version in rows]

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


def _enforce(conn: sqlite3.Connection, retention: Retention, user_id: str, now: float) -> None:
    """Delete what the retention bounds exclude, with the idempotency keys of those events
    (a retry after that stores the event again), and keep user_counts exact."""
    if retention.max_age_s is not None:
        _delete(conn, "received_at < ?", (now - retention.max_age_s,))
    if retention.max_events_per_user is not None:
        # ids are in arrival order: keep the user's newest max_events_per_user rows
        _delete(conn, "user_id = ? AND id <= (SELECT id FROM feedback WHERE user_id = ? "
                      "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (user_id, user_id, retention.max_events_per_user))


def _delete(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    gone = conn.execute(f"SELECT user_id, COUNT(*) FROM feedback WHERE {where} "
                        f"GROUP BY user_id", args).fetchall()
    if not gone:
        return
    conn.execute(f"DELETE FROM idempotency WHERE feedback_id IN "
                 f"(SELECT id FROM feedback WHERE {where})", args)
    conn.execute(f"DELETE FROM feedback WHERE {where}", args)
    conn.executemany("UPDATE user_counts SET n = n - ? WHERE user_id = ?",
                     [(n, user) for user, n in gone])
    conn.execute("DELETE FROM user_counts WHERE n <= 0")
