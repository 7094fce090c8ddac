"""The service under hostile clients: timeouts, the load bound, idempotent feedback,
retention, and the OpenAPI schema fuzzed by schemathesis. Real uvicorn servers on loopback
ports, raw sockets where the HTTP client would hide what the server does."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import torch
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from typer.testing import CliRunner

from deepprl.cli import app as cli_app
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.serve import FeedbackStore, ServeSettings, Service
from deepprl.serve.server import BackgroundServer, free_port
from deepprl.serve.store import FeedbackEvent, KeyReuseError, Retention, Stored
from deepprl.train.run import train_run

TRUNCATED = (b"POST /feedback HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             b"Content-Length: 200\r\n\r\n{\"user_id\": \"1\"")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile-run")
    train_run(RunConfig(dataset={"name": "simulator", "n_users": 30, "n_items": 40,
                                 "events_per_user": 20},
                        train=TrainConfig(epochs=1), policy=PolicyConfig(steps=50),
                        eval=EvalConfig(k=5)), out)
    return out


def _start(run_dir: Path, db: Path, **options: Any) -> BackgroundServer:
    service = Service.load(run_dir, db=db, settings=ServeSettings(**options))
    return BackgroundServer(service).start()


@pytest.fixture
def quick(run_dir: Path, tmp_path: Path) -> Iterator[BackgroundServer]:
    """A server with 1-second timeouts and room for 4 requests at once."""
    srv = _start(run_dir, tmp_path / "q.sqlite3", body_timeout_s=1.0, header_timeout_s=1.0,
                 keep_alive_s=1, max_concurrent_requests=4)
    yield srv
    srv.stop()


def exchange(srv: BackgroundServer, data: bytes, *, limit: float = 10.0
             ) -> tuple[float, bytes, bool]:
    """Send raw bytes, read until the server closes -> (seconds, bytes read, closed).
    closed is False when the server still held the connection after `limit` seconds."""
    with socket.create_connection((srv.host, srv.port), timeout=limit) as sock:
        start = time.monotonic()
        sock.sendall(data)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except TimeoutError:
            return time.monotonic() - start, got, False
        return time.monotonic() - start, got, True


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def _json(raw: bytes) -> Any:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def _in_flight(srv: BackgroundServer) -> float:
    """Requests in progress, the GET /metrics that asks not counted."""
    with requests.get(f"{srv.url}/metrics", timeout=5) as r:
        found = re.search(r"^deepprl_http_requests_in_flight (\S+)$", r.text, re.M)
    assert found is not None
    return float(found.group(1)) - 1


# -- timeouts -------------------------------------------------------------------------------


def test_truncated_bodies_get_408_and_are_closed(quick: BackgroundServer) -> None:
    """The issue's case: Content-Length above the bytes sent. 4 at once (the load bound),
    each answered 408 naming the body and closed after about body_timeout_s."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: exchange(quick, TRUNCATED), range(4)))
    for seconds, raw, closed in results:
        assert closed and _status(raw) == 408, raw
        assert _json(raw)["errors"][0]["field"] == "body"
        assert b"connection: close" in raw.lower()
        assert 0.9 <= seconds < 5.0
    assert quick.service.store.count("1") == 0


def test_partial_headers_idle_and_slow_connections_are_closed(quick: BackgroundServer
                                                              ) -> None:
    seconds, raw, closed = exchange(quick, b"POST /feedback HTTP/1.1\r\nHost: t\r\nContent-")
    assert closed and _status(raw) == 408 and 0.9 <= seconds < 5.0, raw
    assert _json(raw)["errors"][0]["field"] == "headers"
    seconds, raw, closed = exchange(quick, b"")  # opens and says nothing
    assert closed and raw == b"" and seconds < 5.0
    # idle keep-alive connection after a full exchange: closed after keep_alive_s
    seconds, raw, closed = exchange(quick, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert closed and _status(raw) == 200 and seconds < 5.0
    # part of a second request on a kept-alive connection (uvicorn stops its keep-alive
    # timer on the first byte): the header deadline still applies
    with socket.create_connection((quick.host, quick.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b'"uptime_s"' not in got:  # the whole first response
            got += sock.recv(65536)
        assert _status(got) == 200
        start, got = time.monotonic(), b""
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")
        while chunk := sock.recv(65536):
            got += chunk
        assert _status(got) == 408 and time.monotonic() - start < 5.0
    # a client that drips a byte at a time is not kept alive by its drip
    request = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 100
    with socket.create_connection((quick.host, quick.port), timeout=5) as sock:
        start, got = time.monotonic(), b""
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed by the server
                break
            sock.settimeout(0.1)
            try:
                got = sock.recv(65536)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - start
    assert _status(got) == 408 and elapsed < 5.0, (elapsed, got)


# -- the load bound -------------------------------------------------------------------------


def test_beyond_the_limit_503_with_retry_after(quick: BackgroundServer) -> None:
    holders = [socket.create_connection((quick.host, quick.port), timeout=10)
               for _ in range(4)]
    try:
        for sock in holders:
            sock.sendall(TRUNCATED)
        deadline = time.monotonic() + 5
        while _in_flight(quick) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _in_flight(quick) == 4  # /metrics itself is never bounded
        r = requests.post(f"{quick.url}/recommend", json={"user_id": "1", "k": 3}, timeout=5)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json()["errors"][0]["field"] == "server"
        assert requests.get(f"{quick.url}/health", timeout=5).status_code == 200
        for sock in holders:  # the body timeout frees the slots
            assert _status(sock.recv(65536)) == 408
    finally:
        for sock in holders:
            sock.close()
    r = requests.post(f"{quick.url}/recommend", json={"user_id": "1", "k": 3}, timeout=5)
    assert r.status_code == 200, r.text


# -- idempotent feedback --------------------------------------------------------------------


def _rows(srv: BackgroundServer, user: str) -> int:
    with sqlite3.connect(srv.service.store.path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM feedback WHERE user_id = ?",
                                (user,)).fetchone()[0])


def test_a_retry_with_the_key_returns_the_original_answer(quick: BackgroundServer) -> None:
    url, body = f"{quick.url}/feedback", {"user_id": "retrier", "item_id": "5"}
    first = requests.post(url, json=body, headers={"Idempotency-Key": "k-1"}, timeout=5)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    time.sleep(0.05)  # the server's clock moves on: the stored timestamp must not
    again = requests.post(url, json=body, headers={"Idempotency-Key": "k-1"}, timeout=5)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _rows(quick, "retrier") == 1
    other = requests.post(url, json={**body, "item_id": "6"},
                          headers={"Idempotency-Key": "k-1"}, timeout=5)
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert "different request" in other.json()["detail"]
    fresh = requests.post(url, json=body, headers={"Idempotency-Key": "k-2"}, timeout=5)
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    assert requests.post(url, json=body, timeout=5).status_code == 201  # no key: stored
    assert _rows(quick, "retrier") == 3
    for bad in ("", "x" * 256, "has space"):
        r = requests.post(url, json=body, headers={"Idempotency-Key": bad}, timeout=5)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert _rows(quick, "retrier") == 3


def test_concurrent_retries_store_one_event(run_dir: Path, tmp_path: Path) -> None:
    srv = _start(run_dir, tmp_path / "c.sqlite3")
    url = f"{srv.url}/feedback"
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: requests.post(
                url, json={"user_id": "racer", "item_id": "9"},
                headers={"Idempotency-Key": "same"}, timeout=30), range(40)))
        assert {r.status_code for r in answers} == {201}
        assert len({json.dumps(r.json(), sort_keys=True) for r in answers}) == 1
        assert sum("Idempotent-Replayed" not in r.headers for r in answers) == 1
        assert _rows(srv, "racer") == 1
    finally:
        srv.stop()
    srv = _start(run_dir, tmp_path / "c.sqlite3")  # the key is durable like the event
    try:
        again = requests.post(f"{srv.url}/feedback", json={"user_id": "racer", "item_id": "9"},
                              headers={"Idempotency-Key": "same"}, timeout=5)
        assert again.json() == answers[0].json() and _rows(srv, "racer") == 1
    finally:
        srv.stop()


# -- retention ------------------------------------------------------------------------------


def test_per_user_retention_keeps_the_latest_received(run_dir: Path, tmp_path: Path) -> None:
    srv = _start(run_dir, tmp_path / "r.sqlite3", retention_max_events_per_user=3)
    url = f"{srv.url}/feedback"
    try:
        counts = [requests.post(url, json={"user_id": "kept", "item_id": item,
                                           "timestamp": 1e6 + i}, timeout=5
                                ).json()["feedback_events"]
                  for i, item in enumerate(["1", "2", "3", "4", "5"])]
        assert counts == [1, 2, 3, 3, 3]
        requests.post(url, json={"user_id": "other", "item_id": "7"}, timeout=5)
        state = requests.get(f"{srv.url}/users/kept", timeout=5).json()
        assert state["feedback_events"] == 3
        assert [s["item_id"] for s in state["history"]] == ["3", "4", "5"]
        assert _rows(srv, "kept") == 3 and _rows(srv, "other") == 1
    finally:
        srv.stop()


def test_store_add_checks_the_key_in_its_transaction(tmp_path: Path) -> None:
    """What two racing requests meet inside add(): the key is looked up after BEGIN
    IMMEDIATE, so the second one replays (same digest) or is refused (another digest)."""
    store = FeedbackStore(tmp_path / "key.sqlite3", fingerprint="f" * 64)
    event = FeedbackEvent(user_id="a", item_id="1", timestamp=5.0)
    try:
        first = store.add(event, model_version="v", key=("k", "d1"))
        again = store.add(event, model_version="v", key=("k", "d1"))
        assert not first.replayed and again == Stored(id=first.id, timestamp=5.0,
                                                      feedback_events=1, replayed=True)
        with pytest.raises(KeyReuseError, match="different request"):
            store.add(event, model_version="v", key=("k", "d2"))
        assert store.count("a") == 1 and len(store.recent("a", 10)) == 1
    finally:
        store.close()


def test_age_retention_deletes_old_events_and_their_keys(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "age.sqlite3", fingerprint="f" * 64)
    try:
        old = store.add(FeedbackEvent(user_id="a", item_id="1", timestamp=1.0),
                        model_version="v", key=("old-key", "d1"))
        store.add(FeedbackEvent(user_id="b", item_id="2", timestamp=2.0), model_version="v")
        with sqlite3.connect(store.path) as conn:  # received two days ago
            conn.execute("UPDATE feedback SET received_at = received_at - 172800")
        assert store.replay("old-key", "d1") == Stored(id=old.id, timestamp=1.0,
                                                       feedback_events=1, replayed=True)
        store.add(FeedbackEvent(user_id="b", item_id="3", timestamp=3.0), model_version="v",
                  retention=Retention(max_age_s=86_400.0))
        assert store.count("a") == 0 and store.recent("a", 10) == []
        assert store.count("b") == 1 and [e.item_id for e in store.recent("b", 10)] == ["3"]
        assert store.replay("old-key", "d1") is None  # forgotten with its event
    finally:
        store.close()


def test_settings_refuse_nonsense() -> None:
    for field, value in (("retention_max_events_per_user", 0), ("retention_max_age_s", -1.0),
                         ("body_timeout_s", 0.0), ("header_timeout_s", float("inf")),
                         ("max_concurrent_requests", 0), ("max_abs_reward", float("nan"))):
        with pytest.raises(ValueError, match=field):
            ServeSettings(**{field: value})


# -- the OpenAPI schema, fuzzed ---------------------------------------------------------------

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
# positive_data_acceptance is left out on purpose: a schema-valid body may still name an item
# outside the catalogue or a timestamp before the user's log, which is a 422 by design
OPERATIONS = [("/recommend", "POST"), ("/feedback", "POST"), ("/users/{user_id}", "GET"),
              ("/health", "GET"), ("/metrics", "GET")]
FUZZ = [(path, method, mode) for path, method in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or method == "POST" or "{" in path]


@pytest.fixture(scope="module")
def fuzzed(run_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[BackgroundServer, Any]]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
    srv = _start(run_dir, db)
    yield srv, schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    srv.stop()


def test_fuzz_covers_every_operation(fuzzed: tuple[BackgroundServer, Any]) -> None:
    _, schema = fuzzed
    found = {(op.ok().path, op.ok().method.upper()) for op in schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("path", "method", "mode"), FUZZ,
                         ids=[f"{m} {p} {g.value}" for p, m, g in FUZZ])
def test_openapi_fuzz(fuzzed: tuple[BackgroundServer, Any], path: str, method: str,
                      mode: GenerationMode) -> None:
    """schemathesis against the real server: no 5xx, every status, content type, header
    and body as the schema says, and schema-invalid requests refused."""
    srv, schema = fuzzed
    session = requests.Session()
    torch.set_num_threads(1)

    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=srv.url, session=session, checks=CHECKS,
                               timeout=30)

    try:
        run()
    finally:
        session.close()


def test_serve_cli_refuses_bad_bounds(run_dir: Path) -> None:
    runner = CliRunner()
    for option, value, field in (("--retention-events", "0", "retention_max_events_per_user"),
                                 ("--retention-age", "-5", "retention_max_age_s"),
                                 ("--body-timeout", "0", "body_timeout_s"),
                                 ("--max-concurrent-requests", "0",
                                  "max_concurrent_requests")):
        result = runner.invoke(cli_app, ["serve", "--run", str(run_dir), option, value])
        assert result.exit_code == 2 and field in result.output, (option, result.output)


def _serve_process(run_dir: Path, db: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "deepprl", "serve", "--run", str(run_dir),
                                "--db", str(db), "--port", str(port), "--log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start")


def test_retries_after_kill_9_store_each_event_once(run_dir: Path, tmp_path: Path) -> None:
    """Feedback at concurrency 8 to a `deepprl serve` process killed with SIGKILL mid-way;
    after a restart every event not acknowledged is sent again with its key: the store
    holds each event exactly once, whether it had been committed before the kill or not."""
    db, port, n = tmp_path / "kill.sqlite3", free_port(), 120
    url = f"http://127.0.0.1:{port}/feedback"
    events = {f"ev-{i}": {"user_id": f"killed-{i % 7}", "item_id": str(1 + i % 40)}
              for i in range(n)}
    acked: dict[str, Any] = {}
    lock = threading.Lock()

    def send(key: str) -> None:
        try:
            r = requests.post(url, json=events[key], headers={"Idempotency-Key": key},
                              timeout=30)
        except requests.RequestException:
            return  # no answer: to be retried
        if r.status_code == 201:
            with lock:
                acked[key] = r.json()

    process = _serve_process(run_dir, db, port)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(send, key) for key in events]
            deadline = time.monotonic() + 60
            while len(acked) < n // 4 and time.monotonic() < deadline:
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            for future in futures:
                future.result()
    finally:
        process.kill()
        process.wait()
    first = dict(acked)
    assert n // 4 <= len(first) < n
    process = _serve_process(run_dir, db, port)
    try:
        for key in events:
            if key not in first:
                r = requests.post(url, json=events[key], headers={"Idempotency-Key": key},
                                  timeout=30)
                assert r.status_code == 201, r.text
            again = requests.post(url, json=events[key], headers={"Idempotency-Key": key},
                                  timeout=30)
            assert again.headers["Idempotent-Replayed"] == "true"
            if key in first:  # an acknowledged event keeps its acknowledgement
                assert again.json() == first[key]
    finally:
        process.terminate()
        process.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == n
        assert conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0] == n
