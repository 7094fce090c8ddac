"""The FastAPI app: routes, and errors as 4xx JSON that names the offending field."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from deepprl import __version__
from deepprl.serve.batching import RecommendBatcher
from deepprl.serve.middleware import (
    EMPTY,
    PARSED_KEY,
    Guard,
    InFlight,
    Limits,
    Metrics,
    Problem,
    error_body,
    parse_json,
)
from deepprl.serve.reload import Versions
from deepprl.serve.schemas import (
    MAX_ID_LENGTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    RecommendRequest,
    RecommendResponse,
    UserStateResponse,
)
from deepprl.serve.service import FieldError, Service
from deepprl.serve.settings import API_KEY_HEADER, IDEMPOTENCY_HEADER

log = logging.getLogger("deepprl.serve")
T = TypeVar("T")

DESCRIPTION = """Top-K recommendations scored by sum_k alpha_k y_hat_k, with the
per-user, per-context objective weights alpha of DeepPRL's actor, every prediction
y_hat and the model version. Feedback appends to the user's history: the next
recommendation for that user uses the new state, hence new weights. Errors are JSON
`{"detail": "field: message", "errors": [{"field", "message"}]}`."""
# every route may answer these (the Guard's checks come before any route)
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "A request refused; names the field."},
    "5XX": {"model": ErrorResponse, "description": "Busy (503, with Retry-After) or a bug."},
}


def create_app(service: Service | Versions) -> FastAPI:
    """The app for a loaded service, or for the Versions that hold it (hot reload); limits
    and the API key come from its settings."""
    versions = service if isinstance(service, Versions) else Versions(service)
    settings = versions.current.settings
    metrics = Metrics(versions.current.version)
    versions.listeners.append(metrics.serving)
    app = FastAPI(title="deepprl", version=__version__, description=DESCRIPTION,
                  redoc_url=None, responses=ERRORS)
    app.state.versions, app.state.metrics = versions, metrics
    in_flight = InFlight()
    _routes(app, versions, metrics, in_flight)
    _error_handlers(app)
    limits = Limits(max_body_bytes=settings.max_body_bytes,
                    body_timeout_s=settings.body_timeout_s,
                    max_concurrent=settings.max_concurrent_requests,
                    retry_after_s=settings.retry_after_s)
    app.add_middleware(Guard, metrics=metrics, limits=limits, api_key=settings.api_key,
                       key_header=API_KEY_HEADER, in_flight=in_flight)
    return app


class _Inference:
    """Runs forward passes in worker threads, at most `threads` at once, first come first
    served (anyio's limiter queues waiters in order); created on the event loop."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.limiter: CapacityLimiter | None = None

    async def run(self, func: Callable[[], T]) -> T:
        if self.limiter is None:
            self.limiter = CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(func, limiter=self.limiter)


def _routes(app: FastAPI, versions: Versions, metrics: Metrics, in_flight: InFlight) -> None:
    # each request reads the served version once: one version answers it whole
    settings = versions.current.settings
    inference = _Inference(settings.inference_threads)
    batcher = RecommendBatcher(lambda: versions.current, run=inference.run,
                               passes=settings.inference_threads,
                               max_batch=settings.max_batch,
                               alone=lambda: in_flight.n <= 1)

    # the hot route parses and answers by hand: the Guard's parse of the body validated
    # once (FastAPI would parse it again), the answer encoded by json.dumps without a
    # second validation against the response model (Service.answer builds exactly it);
    # the schema stays in the OpenAPI document
    @app.post("/recommend", response_model=RecommendResponse,
              openapi_extra=_body_schema(RecommendRequest))
    async def recommend(request: Request) -> Response:
        """Top-k items for a user, with scores, every y_hat and the weights alpha used."""
        body = await _validated(request, RecommendRequest)
        return _json(await batcher.recommend(body))

    @app.post("/feedback", response_model=FeedbackResponse, status_code=201)
    def feedback(body: FeedbackRequest, response: Response,
                 idempotency_key: Annotated[str | None, Header(
                     alias=IDEMPOTENCY_HEADER, min_length=1, max_length=255,
                     pattern=r"^[!-~]+$",
                     description="Optional, printable ASCII: a retry with the same key and "
                                 "body stores nothing and gets the original answer "
                                 "(header Idempotent-Replayed: true).")] = None) -> Any:
        """Append an interaction to the user's history (durable once answered)."""
        result, replayed = versions.current.feedback(body, idempotency_key=idempotency_key)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
            metrics.replays.inc()
        else:
            metrics.feedback.inc()
        return result

    @app.get("/users/{user_id}", response_model=UserStateResponse)
    async def user_state(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
        timestamp: Annotated[float | None, Query(allow_inf_nan=False, ge=MIN_TIMESTAMP,
                                                 le=MAX_TIMESTAMP)] = None,
    ) -> Any:
        """The user's current history, state s_{u,t} and weights alpha."""
        service = versions.current
        return await inference.run(lambda: service.user_state(user_id, timestamp))

    @app.get("/health", response_model=HealthResponse)
    def health() -> Any:
        """Liveness and readiness: the model is loaded and the store answers."""
        return versions.current.health()

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: request counts, latencies, errors."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


M = TypeVar("M", bound=BaseModel)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that validates its body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}


async def _validated(request: Request, model: type[M]) -> M:
    """The request body as `model`, parsed by the Guard (middleware.PARSED_KEY) or here;
    errors as FastAPI words them (RequestValidationError, located in "body")."""
    if PARSED_KEY in request.scope:
        value = request.scope[PARSED_KEY]
    else:
        parsed = parse_json(await request.body())
        if isinstance(parsed, Problem):
            raise FieldError(parsed.field, parsed.message, status=400)
        value = None if parsed is EMPTY else parsed
    if value is None:  # no body, or JSON null: as FastAPI answers a required body
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}])
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in err.errors()]) from None


def _json(content: object) -> Response:
    return Response(json.dumps(content, allow_nan=False).encode(),
                    media_type="application/json")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'candidates', 3) -> 'candidates[3]'; ('query', 'timestamp') -> 'timestamp'."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            e = next(e for e in errors if e.get("type") == "json_invalid")
            why = (e.get("ctx") or {}).get("error", "invalid JSON")
            return _error(400, [("body", f"malformed JSON: {why}")])
        return _error(422, [(_field(e["loc"]), str(e["msg"])) for e in errors])

    @app.exception_handler(FieldError)
    async def bad_field(request: Request, exc: FieldError) -> Response:
        return _error(exc.status, [(exc.field, exc.message)])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return _error(404, [("path", f"no endpoint {request.url.path!r}")])
        if exc.status_code == 405:
            return _error(405, [("method", f"{request.method} is not allowed on "
                                           f"{request.url.path!r}")])
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. nesting depth)
            return _error(400, [("body", f"malformed JSON: {exc.detail}")])
        return _error(exc.status_code, [("request", str(exc.detail))])

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, [("server", f"internal error ({type(exc).__name__})")])


def _error(status: int, errors: list[tuple[str, str]]) -> Response:
    return Response(error_body(errors), status_code=status, media_type="application/json")


__all__ = ["create_app"]
