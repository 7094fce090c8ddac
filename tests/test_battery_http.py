"""The HTTP part of the battery of malformed inputs: every request below is answered by a
4xx (408, 413 and 503 where those are right) whose JSON names the field, never by a 5xx,
and never stores an event. One real uvicorn server on a loopback port; raw sockets for the
requests an HTTP client cannot send (a body shorter than its Content-Length, headers that
never end). An id unknown to the log is not in the battery: it is a cold start (200) by
design (docs/serving.md)."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.serve import ServeSettings, Service
from deepprl.serve.server import BackgroundServer
from deepprl.train.run import train_run

MAX_BODY = 8192
USED_KEY = "used-key"


class Bad(NamedTuple):
    name: str
    method: str
    path: str
    body: Any  # bytes as sent, a JSON-able value, or None
    status: int
    field: str
    headers: dict[str, str] = {}  # noqa: RUF012 (never mutated)
    chunked: bool = False


def _fb(**fields: Any) -> bytes:
    return json.dumps({"user_id": "battery", "item_id": "3", **fields}).encode()


def _rec(**fields: Any) -> bytes:
    return json.dumps({"user_id": "battery", "k": 3, **fields}).encode()


BATTERY: list[Bad] = [
    Bad("malformed JSON", "POST", "/feedback", b'{"user_id": "1", "item_id": ', 400, "body"),
    Bad("body not UTF-8", "POST", "/feedback", b'{"user_id": "\xff", "item_id": "3"}', 400,
        "body"),
    Bad("id with a lone surrogate", "POST", "/feedback",
        b'{"user_id": "\\ud800", "item_id": "3"}', 422, "user_id"),
    Bad("repeated key", "POST", "/feedback", b'{"user_id": "a", "item_id": "3", '
        b'"user_id": "b"}', 400, "user_id"),
    Bad("nested too deeply", "POST", "/feedback", b"[" * 3000, 400, "body"),
    Bad("number with 5000 digits", "POST", "/feedback",
        b'{"user_id": "a", "item_id": "3", "reward": ' + b"9" * 5000 + b"}", 400, "body"),
    Bad("empty body", "POST", "/feedback", b"", 422, "body"),
    Bad("body a JSON array", "POST", "/feedback", [1, 2], 422, "body"),
    Bad("missing item_id", "POST", "/feedback", {"user_id": "battery"}, 422, "item_id"),
    Bad("missing user_id", "POST", "/feedback", {"item_id": "3"}, 422, "user_id"),
    Bad("user_id a number", "POST", "/feedback", {"user_id": 7, "item_id": "3"}, 422,
        "user_id"),
    Bad("item_id a list", "POST", "/feedback", {"user_id": "a", "item_id": ["3"]}, 422,
        "item_id"),
    Bad("unknown item", "POST", "/feedback", _fb(item_id="no-such-item"), 422, "item_id"),
    Bad("unknown field", "POST", "/feedback", _fb(rating=5), 422, "rating"),
    Bad("timestamp 1e300", "POST", "/feedback", _fb(timestamp=1e300), 422, "timestamp"),
    Bad("timestamp -1e300", "POST", "/feedback", _fb(timestamp=-1e300), 422, "timestamp"),
    Bad("timestamp overflowing to inf", "POST", "/feedback",
        b'{"user_id": "a", "item_id": "3", "timestamp": 1e999}', 422, "timestamp"),
    Bad("timestamp a string", "POST", "/feedback", _fb(timestamp="yesterday"), 422,
        "timestamp"),
    Bad("reward 1e308", "POST", "/feedback", _fb(reward=1e308), 422, "reward"),
    Bad("reward NaN", "POST", "/feedback",
        b'{"user_id": "a", "item_id": "3", "reward": NaN}', 422, "reward"),
    Bad("objective 1e308", "POST", "/feedback", _fb(objectives={"o1": 1e308, "o2": 0.5}),
        422, "objectives.o1"),
    Bad("unknown objective", "POST", "/feedback",
        _fb(objectives={"o1": 0.5, "o2": 0.5, "o3": 0.5}), 422, "objectives.o3"),
    Bad("objectives a list", "POST", "/feedback", _fb(objectives=[0.5, 0.5]), 422,
        "objectives"),
    Bad("idempotency key reused for another event", "POST", "/feedback", _fb(item_id="4"),
        422, "Idempotency-Key", {"Idempotency-Key": USED_KEY}),
    Bad("idempotency key with a space", "POST", "/feedback", _fb(), 422, "Idempotency-Key",
        {"Idempotency-Key": "a b"}),
    Bad("idempotency key of 300 characters", "POST", "/feedback", _fb(), 422,
        "Idempotency-Key", {"Idempotency-Key": "k" * 300}),
    Bad("form-encoded body", "POST", "/feedback", b"user_id=a&item_id=3", 415,
        "Content-Type", {"Content-Type": "application/x-www-form-urlencoded"}),
    Bad("body above the limit", "POST", "/feedback",
        _fb(reward=0.5, pad="x" * MAX_BODY), 413, "body"),
    Bad("chunked body above the limit", "POST", "/feedback",
        _fb(reward=0.5, pad="x" * MAX_BODY), 413, "body", chunked=True),
    Bad("k of 10**30", "POST", "/recommend", _rec(k=10**30), 422, "k"),
    Bad("k a float", "POST", "/recommend", _rec(k=3.0), 422, "k"),
    Bad("context value 1e308", "POST", "/recommend", _rec(context={"x": 1e308}), 422,
        "context.x"),
    Bad("recommend timestamp 1e300", "POST", "/recommend", _rec(timestamp=1e300), 422,
        "timestamp"),
    Bad("unknown candidate", "POST", "/recommend", _rec(candidates=["3", "nope"]), 422,
        "candidates[1]"),
    Bad("path id byte 0xFF", "GET", "/users/%FF", None, 400, "user_id"),
    Bad("path id with a cut UTF-8 sequence", "GET", "/users/ab%C3", None, 400, "user_id"),
    Bad("path id with an encoded surrogate", "GET", "/users/%ED%A0%80", None, 400,
        "user_id"),
    Bad("path not UTF-8", "POST", "/feedback%FE", _fb(), 400, "path"),
    Bad("query timestamp 1e300", "GET", "/users/battery?timestamp=1e300", None, 422,
        "timestamp"),
    Bad("query timestamp not a number", "GET", "/users/battery?timestamp=noon", None, 422,
        "timestamp"),
    Bad("wrong method", "GET", "/feedback", None, 405, "method"),
    Bad("unknown path", "POST", "/feedbacks", _fb(), 404, "path"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    run = tmp_path_factory.mktemp("battery-run")
    train_run(RunConfig(dataset={"name": "simulator", "n_users": 30, "n_items": 40,
                                 "events_per_user": 20},
                        train=TrainConfig(epochs=1), policy=PolicyConfig(steps=50),
                        eval=EvalConfig(k=5)), run)
    settings = ServeSettings(max_body_bytes=MAX_BODY, body_timeout_s=1.0, header_timeout_s=1.0,
                             max_concurrent_requests=3)
    srv = BackgroundServer(Service.load(run, db=run / "battery.sqlite3", settings=settings))
    srv.start()
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("POST", "/feedback", body=_fb(),
                 headers={"Content-Type": "application/json", "Idempotency-Key": USED_KEY})
    assert conn.getresponse().status == 201  # the one event stored: USED_KEY's
    conn.close()
    yield srv
    srv.stop()


def _events(srv: BackgroundServer) -> int:
    with sqlite3.connect(srv.service.store.path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])


def _check(status: int, body: bytes, expected: int, field: str) -> None:
    assert status == expected, body
    answer = json.loads(body)
    assert answer["errors"][0]["field"] == field, answer
    assert f"{field}: " in answer["detail"]


@pytest.mark.parametrize("bad", BATTERY, ids=[b.name for b in BATTERY])
def test_malformed_request(server: BackgroundServer, bad: Bad) -> None:
    before = _events(server)
    raw = bad.body if isinstance(bad.body, bytes) or bad.body is None \
        else json.dumps(bad.body).encode()
    headers = {"Content-Type": "application/json", **bad.headers} if raw is not None \
        else dict(bad.headers)
    payload: Any = raw
    if bad.chunked and raw is not None:
        payload = iter([raw[i : i + 1024] for i in range(0, len(raw), 1024)])
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        # an over-limit body may be refused (413, connection closed) before all of it is
        # sent: the answer is on the socket all the same
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(bad.method, bad.path, body=payload, headers=headers,
                         encode_chunked=bad.chunked)
        response = conn.getresponse()
        _check(response.status, response.read(), bad.status, bad.field)
    finally:
        conn.close()
    assert _events(server) == before


def _in_flight(srv: BackgroundServer) -> float:
    """Requests in progress, the GET /metrics that asks not counted."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    found = re.search(r"^deepprl_http_requests_in_flight (\S+)$", text, re.M)
    assert found is not None
    return float(found.group(1)) - 1


def _raw(srv: BackgroundServer, data: bytes, limit: float = 10.0) -> tuple[float, bytes]:
    """Send raw bytes, read until the server closes -> (seconds, everything read)."""
    with socket.create_connection((srv.host, srv.port), timeout=limit) as sock:
        start, got = time.monotonic(), b""
        sock.sendall(data)
        while chunk := sock.recv(65536):
            got += chunk
        return time.monotonic() - start, got


def _split(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


TRUNCATED = (b"POST /feedback HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100\r\n\r\n{\"user_id\": \"battery\"")


def test_body_shorter_than_its_content_length(server: BackgroundServer) -> None:
    before = _events(server)
    seconds, raw = _raw(server, TRUNCATED)
    _check(*_split(raw), 408, "body")
    assert seconds < 5.0  # body_timeout_s = 1, then the server closes
    assert _events(server) == before


def test_headers_that_never_end(server: BackgroundServer) -> None:
    seconds, raw = _raw(server, b"POST /feedback HTTP/1.1\r\nHost: b\r\nContent-Type: app")
    _check(*_split(raw), 408, "headers")
    assert seconds < 5.0


def test_one_request_past_the_load_bound(server: BackgroundServer) -> None:
    before = _events(server)
    holders = [socket.create_connection((server.host, server.port), timeout=10)
               for _ in range(3)]
    try:
        for sock in holders:
            sock.sendall(TRUNCATED)
        deadline = time.monotonic() + 5
        while _in_flight(server) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the three hold every slot (body_timeout_s is 1 s)
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("POST", "/feedback", body=_fb(), headers={"Content-Type":
                                                               "application/json"})
        response = conn.getresponse()
        assert response.getheader("Retry-After") == "1"
        _check(response.status, response.read(), 503, "server")
        conn.close()
    finally:
        for sock in holders:
            sock.close()
    assert _events(server) == before


def test_the_battery_is_large_enough() -> None:
    """The issue asks for at least 20 malformed HTTP requests; three more above."""
    assert len(BATTERY) + 3 >= 20
    assert len({b.name for b in BATTERY}) == len(BATTERY)
