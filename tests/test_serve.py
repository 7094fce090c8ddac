"""The HTTP service, end to end: real uvicorn servers on loopback ports, stdlib clients.

Covers the API contract, every bad-input case (4xx naming the field, never 500), real-time
updates from feedback, concurrency, durability across restarts and refusal to start on a
corrupt run or a foreign store.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import train_served_run
from deepprl.artifacts import RunError
from deepprl.cli import app as cli_app
from deepprl.data.registry import load_dataset
from deepprl.serve import FeedbackStore, ServeSettings, Service, StoreError
from deepprl.serve.bench import bench_serve
from deepprl.serve.server import BackgroundServer

KEY = "s3cret-key"


class Http:
    """A keep-alive client for one thread: request() -> (status, parsed JSON or text)."""

    def __init__(self, server: BackgroundServer, headers: dict[str, str] | None = None):
        self.host, self.port = server.host, server.port
        self.headers = headers or {}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None, chunked: bool = False
                ) -> tuple[int, Any]:
        hdrs = {**self.headers, **(headers or {})}
        payload: Any = raw
        if body is not None:
            payload = json.dumps(body).encode()
        if payload is not None:
            hdrs.setdefault("Content-Type", "application/json")
        if chunked:
            data = payload
            payload = iter([data[i : i + 4096] for i in range(0, len(data), 4096)])
        try:
            # a server may refuse a body (413) and close before the client has sent all of
            # it: its answer is already on the socket, so read it as a client would
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.conn.request(method, path, body=payload, headers=hdrs,
                                  encode_chunked=chunked)
            response = self.conn.getresponse()
            text = response.read().decode()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # the server may close a connection after an error: reconnect
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            raise
        if response.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.response_headers = response.headers
        ctype = response.getheader("content-type", "")
        return response.status, json.loads(text) if ctype.startswith("application/json") \
            else text

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kw)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield train_served_run(tmp_path_factory.mktemp("serve-run"))


def _start(run_dir: Path, db: Path, **settings: Any) -> BackgroundServer:
    service = Service.load(run_dir, db=db, settings=ServeSettings(**settings))
    return BackgroundServer(service).start()


@pytest.fixture(scope="module")
def server(run_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[BackgroundServer]:
    srv = _start(run_dir, tmp_path_factory.mktemp("db") / "serve.sqlite3")
    yield srv
    srv.stop()


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[Http]:
    c = Http(server)
    yield c
    c.close()


def _user(server: BackgroundServer, n: int = 1) -> tuple[str, float]:
    """A logged user's id and the time of their last logged event."""
    data = server.service.data
    return data.user_ids[n - 1], float(data.time[data.user_events(n)[-1]])


# -- contract ---------------------------------------------------------------------------


def test_health_and_openapi(client: Http, server: BackgroundServer) -> None:
    status, body = client.get("/health")
    assert status == 200 and body["status"] == "ok"
    assert body["items"] == 40 and body["objectives"] == ["o1", "o2"]
    version = body["model_version"]
    assert version.startswith("0.1.0+") and len(version.split("+")[1]) == 12
    status, spec = client.get("/openapi.json")
    assert status == 200
    assert {"/recommend", "/feedback", "/health", "/metrics"} <= set(spec["paths"])
    status, page = client.get("/docs")
    assert status == 200 and "swagger" in page.lower()


def test_recommend_contract(client: Http, server: BackgroundServer) -> None:
    user, last = _user(server, 2)
    status, body = client.post("/recommend", {"user_id": user, "k": 5, "timestamp": last + 60})
    assert status == 200, body
    assert set(body) == {"user_id", "known_user", "model_version", "timestamp",
                         "history_length", "weights", "items"}
    assert body["known_user"] and body["history_length"] == 10
    assert body["model_version"] == server.service.version
    weights = body["weights"]
    assert list(weights) == ["o1", "o2"] and sum(weights.values()) == pytest.approx(1, abs=1e-5)
    items = body["items"]
    assert len(items) == 5 and len({i["item_id"] for i in items}) == 5
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    for item in items:
        expected = sum(weights[n] * item["predicted"][n] for n in weights)
        assert item["score"] == pytest.approx(expected, rel=1e-5)
        assert all(0 <= v <= 1 for v in item["predicted"].values())


def test_every_response_names_the_model_version(client: Http,
                                                 server: BackgroundServer) -> None:
    version = server.service.version
    user, last = _user(server, 2)
    for method, path, body, status in (
            ("POST", "/recommend", {"user_id": user, "k": 3, "timestamp": last + 60}, 200),
            ("POST", "/recommend", {"user_id": user, "k": 0}, 422),
            ("GET", "/no-such-route", None, 404),
            ("GET", "/health", None, 200)):
        got, _ = client.request(method, path, body)
        assert got == status, (path, got)
        assert client.response_headers["x-model-version"] == version, path


def test_recommend_equals_the_library(client: Http, server: BackgroundServer) -> None:
    """Without feedback, the served state is the logged one: same items and weights as
    Recommender.recommend at the same time."""
    user, last = _user(server, 3)
    at = last + 5400
    status, body = client.post("/recommend", {"user_id": user, "k": 7, "timestamp": at})
    assert status == 200
    expected = server.service.recommender.recommend(user, k=7, at_time=at)
    assert [i["item_id"] for i in body["items"]] == [i["item"] for i in expected["items"]]
    for name, value in expected["weights"].items():
        assert body["weights"][name] == pytest.approx(value, rel=1e-6)


def test_candidates_and_exclude_seen(client: Http, server: BackgroundServer) -> None:
    user, last = _user(server, 4)
    data = server.service.data
    chosen = ["3", "7", "11", "19"]
    status, body = client.post("/recommend", {"user_id": user, "k": 10, "candidates": chosen,
                                              "timestamp": last + 1})
    assert status == 200
    assert sorted(i["item_id"] for i in body["items"]) == sorted(chosen)  # k > candidates
    log = load_dataset(server.service.config.dataset)  # the service keeps only a tail
    seen = {log.item_ids[i - 1] for i in log.item[log.user_events(4)]}
    status, body = client.post("/recommend", {"user_id": user, "k": 40, "exclude_seen": True})
    assert status == 200
    assert {i["item_id"] for i in body["items"]} == set(data.item_ids) - seen
    status, body = client.post("/recommend", {"user_id": user, "k": 3, "exclude_seen": True,
                                              "candidates": sorted(seen)[:3]})
    assert status == 422 and "exclude_seen" in body["detail"]


def test_cold_start_user(client: Http) -> None:
    status, body = client.post("/recommend", {"user_id": "never-seen-user", "k": 3})
    assert status == 200, body
    assert body["known_user"] is False and body["history_length"] == 0
    assert sum(body["weights"].values()) == pytest.approx(1, abs=1e-5)
    assert abs(body["timestamp"] - time.time()) < 60  # default: the server's clock
    status, state = client.get("/users/never-seen-user")
    assert status == 200 and state["known_user"] is False
    assert state["logged_events"] == 0 and state["feedback_events"] == 0
    assert state["history"] == []


def test_user_state_endpoint(client: Http, server: BackgroundServer) -> None:
    user, last = _user(server, 5)
    status, body = client.get(f"/users/{user}?timestamp={last + 10}")
    assert status == 200
    assert body["logged_events"] == 20 and len(body["history"]) == 10
    assert all(step["source"] == "log" for step in body["history"])
    assert len(body["state"]) == server.service.recommender.model.state_dim
    status, body = client.get(f"/users/{user}?timestamp=nan")
    assert status == 422 and "timestamp" in body["detail"]


def test_metrics(client: Http) -> None:
    client.post("/recommend", {"user_id": "m", "k": 2})
    client.post("/recommend", {"user_id": "m", "k": 0})
    status, text = client.get("/metrics")
    assert status == 200
    assert 'deepprl_http_requests_total{method="POST",route="/recommend",status="200"}' in text
    assert 'deepprl_http_requests_total{method="POST",route="/recommend",status="422"}' in text
    assert 'deepprl_http_errors_total{kind="client",route="/recommend"}' in text
    assert 'deepprl_http_request_duration_seconds_bucket{le="0.02",method="POST",' \
           'route="/recommend"}' in text
    assert "deepprl_model_info{version=" in text


# -- bad input: a 4xx that names the field, never a 500 -----------------------------------

BAD_RECOMMEND: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"user_id": "1", "k": ', 400, "body"),
    ("truncated JSON", b'{"user_id": "1"', 400, "body"),
    ("deep nesting", b"[" * 100_000, 400, "body"),
    ("not UTF-8", b'{"user_id": "\xff", "k": 3}', 400, "body"),
    ("number too long", b'{"user_id": "1", "k": ' + b"9" * 5000 + b"}", 400, "body"),
    ("repeated key", b'{"user_id": "1", "k": 3, "user_id": "2"}', 400, "user_id"),
    ("empty body", b"", 422, "body"),
    ("not an object", [1, 2], 422, "body"),
    ("missing user_id", {"k": 3}, 422, "user_id"),
    ("missing k", {"user_id": "1"}, 422, "k"),
    ("extra field", {"user_id": "1", "k": 3, "limit": 4}, 422, "limit"),
    ("k as string", {"user_id": "1", "k": "5"}, 422, "k"),
    ("k as float", {"user_id": "1", "k": 5.0}, 422, "k"),
    ("k as bool", {"user_id": "1", "k": True}, 422, "k"),
    ("k zero", {"user_id": "1", "k": 0}, 422, "k"),
    ("k negative", {"user_id": "1", "k": -2}, 422, "k"),
    ("k above the limit", {"user_id": "1", "k": 1001}, 422, "k"),
    ("k huge", {"user_id": "1", "k": 10**30}, 422, "k"),
    ("user_id as int", {"user_id": 1, "k": 3}, 422, "user_id"),
    ("user_id empty", {"user_id": "", "k": 3}, 422, "user_id"),
    ("user_id null", {"user_id": None, "k": 3}, 422, "user_id"),
    ("empty candidates", {"user_id": "1", "k": 3, "candidates": []}, 422, "candidates"),
    ("unknown candidate", {"user_id": "1", "k": 3, "candidates": ["2", "nope"]}, 422,
     "candidates[1]"),
    ("duplicate candidate", {"user_id": "1", "k": 3, "candidates": ["2", "5", "2"]}, 422,
     "candidates[2]"),
    ("candidate as int", {"user_id": "1", "k": 3, "candidates": ["2", 5]}, 422,
     "candidates[1]"),
    ("candidates not a list", {"user_id": "1", "k": 3, "candidates": "2"}, 422, "candidates"),
    ("timestamp NaN", b'{"user_id": "1", "k": 3, "timestamp": NaN}', 422, "timestamp"),
    ("timestamp Infinity", b'{"user_id": "1", "k": 3, "timestamp": Infinity}', 422,
     "timestamp"),
    ("timestamp overflow", b'{"user_id": "1", "k": 3, "timestamp": 1e999}', 422, "timestamp"),
    ("timestamp as string", {"user_id": "1", "k": 3, "timestamp": "now"}, 422, "timestamp"),
    ("timestamp before the last event", {"user_id": "1", "k": 3, "timestamp": 0.0}, 422,
     "timestamp"),
    ("context NaN", b'{"user_id": "1", "k": 3, "context": {"x": NaN}}', 422, "context.x"),
    ("context not an object", {"user_id": "1", "k": 3, "context": [1]}, 422, "context"),
    ("context unknown column", {"user_id": "1", "k": 3, "context": {"device": 1.0}}, 422,
     "context.device"),
    ("context clock column", {"user_id": "1", "k": 3, "context": {"hour_sin": 0.5}}, 422,
     "context.hour_sin"),
    ("exclude_seen as int", {"user_id": "1", "k": 3, "exclude_seen": 1}, 422,
     "exclude_seen"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_RECOMMEND,
                         ids=[c[0] for c in BAD_RECOMMEND])
def test_bad_recommend(client: Http, case: str, body: Any, status: int, field: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, answer = client.post("/recommend", raw=raw)
    assert got == status, answer
    assert answer["detail"].startswith(f"{field}:") or f"{field}:" in answer["detail"], answer
    assert answer["errors"][0]["field"] == field


def _bad_feedback(server: BackgroundServer) -> list[tuple[str, Any, int, str]]:
    user, last = _user(server, 6)
    ok = {"user_id": user, "item_id": "4", "timestamp": last + 1}
    return [
        ("missing item_id", {"user_id": user}, 422, "item_id"),
        ("unknown item", {**ok, "item_id": "no-such-item"}, 422, "item_id"),
        ("item_id as int", {**ok, "item_id": 4}, 422, "item_id"),
        ("extra field", {**ok, "rating": 5}, 422, "rating"),
        ("unknown objective", {**ok, "objectives": {"o1": 0.5, "o2": 0.5, "o3": 0.1}}, 422,
         "objectives.o3"),
        ("missing objective", {**ok, "objectives": {"o1": 0.5}}, 422, "objectives.o2"),
        ("objective above 1", {**ok, "objectives": {"o1": 1.5, "o2": 0.5}}, 422,
         "objectives.o1"),
        ("objective negative", {**ok, "objectives": {"o1": 0.5, "o2": -0.1}}, 422,
         "objectives.o2"),
        ("objective as string", {**ok, "objectives": {"o1": "high", "o2": 0.1}}, 422,
         "objectives.o1"),
        ("objective NaN", json.dumps(ok)[:-1].encode() +
         b', "objectives": {"o1": NaN, "o2": 0.1}}', 422, "objectives.o1"),
        ("reward Infinity", json.dumps(ok)[:-1].encode() + b', "reward": -Infinity}', 422,
         "reward"),
        ("reward as string", {**ok, "reward": "1"}, 422, "reward"),
        ("timestamp before the user's log", {**ok, "timestamp": last - 10}, 422, "timestamp"),
        ("timestamp in the future", {**ok, "timestamp": time.time() + 10 * 86400}, 422,
         "timestamp"),
        ("malformed JSON", b"{'user_id': 1}", 400, "body"),
    ]


def test_bad_feedback(client: Http, server: BackgroundServer) -> None:
    before = server.service.store.count(_user(server, 6)[0])
    for case, body, status, field in _bad_feedback(server):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        got, answer = client.post("/feedback", raw=raw)
        assert got == status, (case, answer)
        assert answer["errors"][0]["field"] == field, (case, answer)
    assert server.service.store.count(_user(server, 6)[0]) == before  # nothing stored


def test_transport_errors(client: Http) -> None:
    status, body = client.post("/recommend", raw=b"user_id=1&k=3",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "Content-Type" in body["detail"]
    status, body = client.get("/nowhere")
    assert status == 404 and body["errors"][0]["field"] == "path"
    status, body = client.get("/recommend")
    assert status == 405 and body["errors"][0]["field"] == "method"
    status, body = client.post("/recommend", {"user_id": "1", "k": 3},
                               headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


def test_size_limits(run_dir: Path, tmp_path: Path) -> None:
    srv = _start(run_dir, tmp_path / "s.sqlite3", max_body_bytes=2048, max_candidates=5,
                 max_k=4)
    c = Http(srv)
    try:
        big = {"user_id": "1", "k": 3, "candidates": [str(i) for i in range(1, 41)] * 20}
        status, body = c.post("/recommend", big)
        assert status == 413 and body["errors"][0]["field"] == "body"
        status, body = c.post("/recommend", big, chunked=True)  # no Content-Length
        assert status == 413 and body["errors"][0]["field"] == "body"
        status, body = c.post("/recommend", {"user_id": "1", "k": 3,
                                             "candidates": [str(i) for i in range(1, 7)]})
        assert status == 422 and body["errors"][0]["field"] == "candidates"
        status, body = c.post("/recommend", {"user_id": "1", "k": 5})
        assert status == 422 and "limit of 4" in body["detail"]
        status, body = c.post("/recommend", {"user_id": "1", "k": 4}, chunked=True)
        assert status == 200, body
    finally:
        c.close()
        srv.stop()


def test_api_key(run_dir: Path, tmp_path: Path) -> None:
    srv = _start(run_dir, tmp_path / "k.sqlite3", api_key=KEY)
    anonymous, wrong, right = Http(srv), Http(srv, {"X-API-Key": "nope"}), \
        Http(srv, {"X-API-Key": KEY})
    try:
        for c, expected in ((anonymous, "missing"), (wrong, "wrong")):
            for method, path in (("POST", "/recommend"), ("POST", "/feedback"),
                                 ("GET", "/metrics"), ("GET", "/users/1")):
                status, body = c.request(method, path, {"user_id": "1", "k": 1}
                                         if method == "POST" else None)
                assert status == 401, (method, path, body)
                assert body["errors"][0]["field"] == "X-API-Key" and expected in body["detail"]
        assert anonymous.get("/health")[0] == 200  # liveness stays open
        assert right.post("/recommend", {"user_id": "1", "k": 2})[0] == 200
        assert right.get("/metrics")[0] == 200
    finally:
        for c in (anonymous, wrong, right):
            c.close()
        srv.stop()


# -- real time ----------------------------------------------------------------------------


def test_feedback_updates_state_weights_and_ranking(client: Http,
                                                    server: BackgroundServer) -> None:
    user, last = _user(server, 7)
    now = last + 3600
    ask = {"user_id": user, "k": 40, "timestamp": now + 60}
    _, before = client.post("/recommend", ask)
    _, state_before = client.get(f"/users/{user}?timestamp={now + 60}")
    status, stored = client.post("/feedback", {"user_id": user, "item_id": "9",
                                               "timestamp": now, "reward": 0.8,
                                               "objectives": {"o1": 0.9, "o2": 0.2}})
    assert status == 201, stored
    assert stored["feedback_events"] == 1 and stored["timestamp"] == now
    _, after = client.post("/recommend", ask)
    _, state_after = client.get(f"/users/{user}?timestamp={now + 60}")
    assert state_after["history"][-1] == {"item_id": "9", "timestamp": now,
                                          "source": "feedback"}
    assert state_after["feedback_events"] == 1 and len(state_after["history"]) == 10
    assert state_after["state"] != state_before["state"]
    assert after["weights"] != before["weights"]
    assert after["weights"] == state_after["weights"]
    scores_before = {i["item_id"]: i["score"] for i in before["items"]}
    scores_after = {i["item_id"]: i["score"] for i in after["items"]}
    assert scores_after != scores_before
    # the response is exactly the model applied to the new history (log tail + feedback)
    service, data = server.service, server.service.data
    expected = service.score(service.history(user), now + 60,
                             service.request_context(service.history(user), now + 60, None),
                             service.catalogue, 40)
    assert [data.item_ids[int(i)] for i in expected.top] == [i["item_id"] for i in after["items"]]


def test_feedback_for_a_new_user_builds_their_state(client: Http) -> None:
    user = "brand-new-user"
    _, first = client.post("/recommend", {"user_id": user, "k": 5, "timestamp": 1e6})
    for i, item in enumerate(["1", "2", "3"]):
        status, _ = client.post("/feedback", {"user_id": user, "item_id": item,
                                              "timestamp": 1e6 + 60 * i})
        assert status == 201
    _, later = client.post("/recommend", {"user_id": user, "k": 5, "timestamp": 1e6 + 600})
    assert first["history_length"] == 0 and later["history_length"] == 3
    assert later["known_user"] is False and later["weights"] != first["weights"]
    status, body = client.post("/recommend", {"user_id": user, "k": 5, "timestamp": 1e6})
    assert status == 422 and body["errors"][0]["field"] == "timestamp"


# -- concurrency and durability ---------------------------------------------------------


def test_fifty_concurrent_clients_mixed_requests(server: BackgroundServer) -> None:
    data = server.service.data
    rng = random.Random(7)
    users = list(data.user_ids) + [f"guest-{i}" for i in range(10)]
    plan = []
    for _ in range(2000):
        roll, user = rng.random(), rng.choice(users)
        if roll < 0.55:
            body: dict[str, Any] = {"user_id": user, "k": rng.randint(1, 20)}
            if rng.random() < 0.5:
                body["candidates"] = rng.sample(list(data.item_ids), rng.randint(1, 30))
            plan.append(("POST", "/recommend", body, 200))
        elif roll < 0.85:
            plan.append(("POST", "/feedback", {"user_id": f"load-{user}",
                                               "item_id": rng.choice(data.item_ids)}, 201))
        elif roll < 0.95:
            plan.append(("GET", "/health", None, 200))
        else:
            plan.append(("GET", f"/users/{user}", None, 200))
    local = threading.local()
    clients: list[Http] = []
    lock = threading.Lock()

    def call(step: tuple[str, str, Any, int]) -> str | None:
        if not hasattr(local, "client"):
            local.client = Http(server)
            with lock:
                clients.append(local.client)
        method, path, body, expected = step
        try:
            status, answer = local.client.request(method, path, body)
        except Exception as err:  # a transport error is an error too
            return f"{method} {path}: {err!r}"
        return None if status == expected else f"{method} {path}: {status} {answer}"

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        errors = [e for e in pool.map(call, plan) if e is not None]
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    assert errors == [], errors[:5]
    assert elapsed < 60
    sent: dict[str, int] = {}
    for _method, path, body, _ in plan:
        if path == "/feedback":
            sent[body["user_id"]] = sent.get(body["user_id"], 0) + 1
    for user, n in sent.items():
        assert server.service.store.count(user) == n


def test_concurrent_feedback_for_one_user_stores_exactly_n(server: BackgroundServer) -> None:
    n, user = 200, "hot-user"

    def post(i: int) -> tuple[int, Any]:
        c = Http(server)
        try:
            return c.post("/feedback", {"user_id": user, "item_id": str(1 + i % 40)})
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(post, range(n)))
    assert all(status == 201 for status, _ in results), results[:3]
    assert server.service.store.count(user) == n
    with sqlite3.connect(server.service.store.path) as conn:  # the rows themselves
        rows = conn.execute("SELECT COUNT(*) FROM feedback WHERE user_id = ?", (user,))
        assert rows.fetchone()[0] == n
    # every transaction saw a consistent count: the counts are exactly 1..n
    assert sorted(body["feedback_events"] for _, body in results) == list(range(1, n + 1))
    assert len({body["id"] for _, body in results}) == n


def test_state_survives_a_restart(run_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "durable.sqlite3"
    user = "returning-user"
    ask = {"user_id": user, "k": 5, "timestamp": 2e6}
    srv = _start(run_dir, db)
    c = Http(srv)
    for i, item in enumerate(["5", "6", "7", "8"]):
        assert c.post("/feedback", {"user_id": user, "item_id": item, "timestamp": 1e6 + i,
                                    "objectives": {"o1": 0.25, "o2": 1.0}})[0] == 201
    _, before = c.post("/recommend", ask)
    c.close()
    srv.stop()
    srv = _start(run_dir, db)
    c = Http(srv)
    try:
        _, after = c.post("/recommend", ask)
        _, state = c.get(f"/users/{user}?timestamp=2e6")
        assert after == before and after["history_length"] == 4
        assert state["feedback_events"] == 4
        assert [s["item_id"] for s in state["history"]] == ["5", "6", "7", "8"]
        stored = srv.service.store.recent(user, 10)
        assert stored[0].objectives == {"o1": 0.25, "o2": 1.0}
    finally:
        c.close()
        srv.stop()


# -- refusing to start --------------------------------------------------------------------


def _reseal(run: Path) -> None:
    """A new completion marker over a changed copy (as a run written elsewhere has)."""
    from deepprl.rundir import write_marker

    write_marker(run, json.loads((run / "COMPLETE.json").read_text())["config"])


def test_corrupt_or_incompatible_run_stops_at_start(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad-run"
    shutil.copytree(run_dir, bad, ignore=shutil.ignore_patterns("*.sqlite3*"))
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RunError, match="corrupt or was changed after training"):
        Service.load(bad, db=tmp_path / "x.sqlite3")
    _reseal(bad)  # past the digest check: the weights loader's own
    with pytest.raises(RunError, match="corrupt or incompatible weights"):
        Service.load(bad, db=tmp_path / "x.sqlite3")
    result = CliRunner().invoke(cli_app, ["serve", "--run", str(bad), "--port", "0"])
    assert result.exit_code == 2 and "corrupt" in result.output

    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("*.sqlite3*"))
    schema = json.loads((old / "schema.json").read_text())
    (old / "schema.json").write_text(json.dumps({**schema, "deepprl_version": "0.0.9"}))
    _reseal(old)
    result = CliRunner().invoke(cli_app, ["serve", "--run", str(old)])
    assert result.exit_code == 2 and "retrain" in result.output

    result = CliRunner().invoke(cli_app, ["serve", "--run", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such run directory" in result.output


def test_store_errors_stop_at_start(run_dir: Path, tmp_path: Path) -> None:
    other = FeedbackStore(tmp_path / "other.sqlite3", fingerprint="f" * 64)
    other.close()
    with pytest.raises(StoreError, match="other data"):
        Service.load(run_dir, db=tmp_path / "other.sqlite3")
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"definitely not sqlite" * 100)
    result = CliRunner().invoke(cli_app, ["serve", "--run", str(run_dir), "--db",
                                          str(garbage)])
    assert result.exit_code == 2 and "--db" in result.output
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the feedback store"):
        Service.load(run_dir, db=blocker / "serve.sqlite3")
    result = CliRunner().invoke(cli_app, ["serve", "--run", str(run_dir), "--max-k", "0"])
    assert result.exit_code == 2 and "max_k" in result.output


def test_bench_serve_smoke(run_dir: Path) -> None:
    """The benchmark drives a real `python -m deepprl serve` process (small counts)."""
    result = bench_serve(run_dir, candidates=40, k=10, requests_c1=20, requests_c50=100,
                         warmup=5)
    assert result["candidates"] == 40 and result["k"] == 10
    for level, sent in (("concurrency_1", 20), ("concurrency_50", 100)):
        figures = result[level]
        assert figures["requests"] == sent, level  # every request sent was answered and timed
        for name in ("p50_ms", "p99_ms", "mean_ms", "max_ms", "requests_per_s"):
            assert math.isfinite(figures[name]) and figures[name] > 0, (level, name)
        assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"], level
    # met: the stated targets (issue 17) compared with the measured p99 and requests/s
    assert result["target_p99_ms_c1"] == 3.0
    assert result["target_requests_per_s_c50"] == 700.0
    each = {"c1_p99": result["concurrency_1"]["p99_ms"] <= 3.0,
            "c50_requests_per_s": result["concurrency_50"]["requests_per_s"] >= 700.0}
    assert result["met_each"] == each and result["met"] is all(each.values())
    with pytest.raises(ValueError, match="fewer than"):
        bench_serve(run_dir, candidates=41, requests_c1=1, requests_c50=1)
