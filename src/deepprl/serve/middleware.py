"""Pure ASGI middleware in front of the app: metrics, load bound, API key, path, content
type, body limit and body timeout.

Order of checks for every HTTP request: route label and timer start; the bound on requests
in progress (503 with Retry-After beyond it; /health and /metrics are never refused); API
key (401); a path whose percent-escapes are not UTF-8 (400); for requests with a body,
Content-Type (415), Content-Length (413 beyond the limit, before reading), then the body is
read up to the limit (413 if a chunked body grows past it) within the body timeout (408,
and the connection is closed) and checked to be JSON without repeated keys (400), then
handed to the app whole: nothing is parsed before its size is known.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTES = ("/recommend", "/feedback", "/health", "/metrics", "/docs", "/openapi.json")
OPEN_ROUTES = frozenset({"/health", "/docs", "/openapi.json", "/docs/oauth2-redirect"})
# cheap and needed most when the server is busy: never refused by the load bound
UNBOUNDED_ROUTES = frozenset({"/health", "/metrics"})
# sent with 408, 413 and 503, which answer before the body is read: closing spares the
# server reading (and discarding) the rest of it
CLOSE = [(b"connection", b"close")]
Refusal = tuple[int, str, str, list[tuple[bytes, bytes]] | None]
"""(status, field named, message, extra headers) of a request answered before the app."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Prometheus metrics in a registry of their own (GET /metrics)."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("deepprl_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("deepprl_http_request_duration_seconds",
                                 "Time from request to the end of the response.",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.errors = Counter("deepprl_http_errors", "Requests answered 4xx (client) or 5xx "
                              "(server).", ["route", "kind"], registry=self.registry)
        self.in_flight = Gauge("deepprl_http_requests_in_flight", "Requests being handled.",
                               registry=self.registry)
        self.feedback = Counter("deepprl_feedback_events", "Feedback events stored.",
                                registry=self.registry)
        self.replays = Counter("deepprl_feedback_replays", "Feedback retries answered from "
                               "their idempotency key (nothing stored).",
                               registry=self.registry)
        self.info = Gauge("deepprl_model_info", "The served model (value 1; 0: a version "
                          "served before a reload).", ["version"], registry=self.registry)
        self.version = version
        self.info.labels(version=version).set(1)

    def serving(self, version: str) -> None:
        """After a hot reload: `version` is the served model."""
        self.info.labels(version=self.version).set(0)
        self.version = version
        self.info.labels(version=version).set(1)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(method=method, route=route).observe(seconds)
        if status >= 400:
            self.errors.labels(route=route, kind="server" if status >= 500 else "client").inc()


def route_label(path: str) -> str:
    """A bounded label for a path (never the raw path: unknown paths are 'other')."""
    if path in ROUTES:
        return path
    if path.startswith("/users/"):
        return "/users/{user_id}"
    return "other"


@dataclass(frozen=True)
class Limits:
    """What the Guard enforces (from ServeSettings)."""

    max_body_bytes: int
    body_timeout_s: float
    max_concurrent: int
    retry_after_s: int


VERSION_HEADER = b"x-model-version"


class InFlight:
    """Requests in progress on the bounded routes: counted by the Guard, read by the
    /recommend batcher (a lone request is scored on the event loop). One event loop, so
    no lock."""

    def __init__(self) -> None:
        self.n = 0


class Guard:
    """The ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, limits: Limits,
                 api_key: str | None, key_header: str, in_flight: InFlight | None = None
                 ) -> None:
        self.app, self.metrics, self.limits = app, metrics, limits
        self.max_body = limits.max_body_bytes
        self.api_key = api_key.encode() if api_key is not None else None
        self.key_header, self.key_header_raw = key_header, key_header.lower().encode()
        self.in_flight = in_flight if in_flight is not None else InFlight()

    @property
    def active(self) -> int:
        """Requests in progress (bounded routes)."""
        return self.in_flight.n

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method, route = scope["method"], route_label(scope["path"])
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                # every response, errors included, names the model served (the body of a
                # successful one names the version that answered it)
                message = {**message, "headers": [*message.get("headers", []),
                                                  (VERSION_HEADER, self.metrics.version.encode())]}
            await send(message)

        bounded = scope["path"] not in UNBOUNDED_ROUTES
        if bounded and self.active >= self.limits.max_concurrent:
            retry = str(self.limits.retry_after_s)
            await _reply(send_status, 503, "server", f"busy: {self.active} requests in "
                         f"progress, the limit; retry after {retry} s",
                         [(b"retry-after", retry.encode()), *CLOSE])
            self.metrics.observe(method, route, status, time.perf_counter() - start)
            return
        self.in_flight.n += bounded
        self.metrics.in_flight.inc()
        try:
            await self._handle(scope, receive, send_status, route)
        finally:
            self.in_flight.n -= bounded
            self.metrics.in_flight.dec()
            self.metrics.observe(method, route, status, time.perf_counter() - start)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        headers = dict(scope["headers"])
        refusal = self._access_refusal(scope, headers)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        refusal = self._body_header_refusal(headers)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        with anyio.move_on_after(self.limits.body_timeout_s) as timer:
            body = await self._read_body(receive)
        if timer.cancelled_caught:
            await _reply(send, 408, "body", f"not received within "
                         f"{self.limits.body_timeout_s:g} s", CLOSE)
            return
        if body is None:
            await _reply(send, 413, "body", f"more than the limit of {self.max_body} bytes",
                         CLOSE)
            return
        parsed = parse_json(body)
        if isinstance(parsed, Problem):
            await _reply(send, 400, parsed.field, parsed.message)
            return
        if parsed is not EMPTY:  # handed on: the route need not parse the body again
            scope = {**scope, PARSED_KEY: parsed}
        await self.app(scope, _replay(body, receive), send)

    def _access_refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> Refusal | None:
        """401 without the API key, 400 for a path that is not UTF-8; None: go on."""
        if self.api_key is not None and scope["path"] not in OPEN_ROUTES:
            given = headers.get(self.key_header_raw)
            if given is None or not hmac.compare_digest(given, self.api_key):
                what = "is missing" if given is None else "is wrong"
                return 401, self.key_header, f"the API key header {what}", None
        problem = path_problem(scope.get("raw_path"))
        return None if problem is None else (400, *problem, None)

    def _body_header_refusal(self, headers: dict[bytes, bytes]) -> Refusal | None:
        """415 for a body that is not JSON, 400/413 for a bad or too large Content-Length
        (before a byte of the body is read); None: go on."""
        ctype = headers.get(b"content-type", b"application/json").decode("latin-1")
        if ctype.split(";")[0].strip().lower() != "application/json":
            return 415, "Content-Type", f"must be application/json, got {ctype!r}", None
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            return 400, "Content-Length", f"not a number: {length!r}", None
        if length is not None and int(length) > self.max_body:
            return (413, "body", f"{int(length)} bytes, above the limit of {self.max_body}",
                    CLOSE)
        return None

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


@dataclass(frozen=True)
class Problem:
    """Why a body is not acceptable JSON: the field named and the message."""

    field: str
    message: str


EMPTY = object()
"""parse_json of an empty body (the app answers 422 "body: Field required")."""
PARSED_KEY = "deepprl.json"
"""The scope key under which the Guard hands the parsed body of a request to the app."""


def parse_json(body: bytes) -> object:
    """The JSON value of a body, EMPTY for an empty one, or a Problem when it is not
    acceptable JSON: not UTF-8, malformed, nested too deep, a number too long, or an
    object that repeats a key (JSON parsers disagree on which one wins, so we refuse to
    guess)."""
    if not body:
        return EMPTY
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as err:
        return Problem(err.key, "the key appears more than once in the object")
    except UnicodeDecodeError as err:
        return Problem("body", f"not UTF-8 ({err.reason} at byte {err.start})")
    except json.JSONDecodeError as err:
        return Problem("body", f"malformed JSON: {err.msg} at line {err.lineno} column "
                               f"{err.colno}")
    except RecursionError:
        return Problem("body", "malformed JSON: nested too deeply")
    except ValueError as err:  # an integer literal of more than 4300 digits
        why = "a number has too many digits" if "digits" in str(err) else str(err)
        return Problem("body", f"malformed JSON: {why}")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay


def path_problem(raw_path: bytes | None) -> tuple[str, str] | None:
    """(field, message) when the path's percent-escapes do not decode as UTF-8: the server
    would otherwise turn them into U+FFFD and serve another id."""
    if not raw_path:
        return None
    field, raw = ("user_id", raw_path[len(b"/users/"):]) if raw_path.startswith(b"/users/") \
        else ("path", raw_path)
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        return field, f"not UTF-8 once percent-decoded ({err.reason} at byte {err.start})"
    return None


async def _reply(send: Send, status: int, field: str, message: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = error_body([(field, message)])
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def error_body(errors: list[tuple[str, str]]) -> bytes:
    """{"detail": "field: message; ...", "errors": [{"field", "message"}]} as JSON."""
    return json.dumps({
        "detail": "; ".join(f"{f}: {m}" for f, m in errors),
        "errors": [{"field": f, "message": m} for f, m in errors],
    }).encode()
