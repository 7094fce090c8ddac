"""Service settings: one frozen dataclass, every field with a default and a docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass

API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "DEEPPRL_API_KEY"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class ServeSettings:
    """Limits, timeouts, retention and access control of `deepprl serve`."""

    max_k: int = 1000
    """Largest k a /recommend request may ask for."""
    max_candidates: int = 10_000
    """Longest `candidates` list of a /recommend request."""
    max_body_bytes: int = 1 << 20
    """Largest request body (1 MiB), enforced before parsing (413 beyond)."""
    api_key: str | None = None
    """When set, every endpoint but /health and the OpenAPI pages needs header X-API-Key."""
    inference_threads: int = 2
    """Forward passes run at once, each with one intra-op torch thread; further requests
    wait in a first-come, first-served queue. About one per CPU core."""
    max_batch: int = 32
    """Most /recommend requests one forward pass scores: requests that arrive while the
    inference threads are busy are scored together in the next pass (deepprl.serve.batching);
    1: each on its own."""
    future_tolerance_s: float = 86_400.0
    """How far past the server's clock a feedback timestamp may lie (clock skew)."""
    max_concurrent_requests: int = 100
    """Requests handled at once (reading the body, queued or running), /health and /metrics
    aside; one more is answered 503 with Retry-After at once instead of joining the queue."""
    retry_after_s: int = 1
    """The Retry-After (seconds) of a 503 sent beyond max_concurrent_requests."""
    body_timeout_s: float = 10.0
    """Longest time from a request's headers to the end of its body; past it 408 and the
    connection is closed (a client that announces more bytes than it sends)."""
    header_timeout_s: float = 10.0
    """Longest time a connection may take to send a request's headers: from the first byte
    of the request, or from opening when nothing comes; past it 408 (or, when nothing was
    sent, a plain close)."""
    keep_alive_s: int = 5
    """Longest idle time of a keep-alive connection between a response and the next
    request."""
    max_abs_reward: float = 1e9
    """Largest |reward| /feedback accepts (422 beyond): room for any rating or revenue
    scale, while refusing values that overflow float32 in a retraining."""
    retention_max_events_per_user: int | None = None
    """Keep at most this many feedback events per user (the most recently received);
    older ones are deleted in the transaction that stores a new one. None: no bound."""
    retention_max_age_s: float | None = None
    """Delete feedback events received more than this many seconds ago, in the transaction
    of every write. None: keep them forever."""

    def __post_init__(self) -> None:
        for name in ("max_k", "max_candidates", "max_body_bytes", "inference_threads", "max_batch",
                     "max_concurrent_requests", "retry_after_s", "keep_alive_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key must not be empty")
        if not self.future_tolerance_s >= 0:
            raise ValueError(f"future_tolerance_s must be >= 0, got {self.future_tolerance_s}")
        for name in ("body_timeout_s", "header_timeout_s", "max_abs_reward"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        per_user, age = self.retention_max_events_per_user, self.retention_max_age_s
        if per_user is not None and per_user < 1:
            raise ValueError(f"retention_max_events_per_user must be >= 1 or None, got "
                             f"{per_user}")
        if age is not None and not (age > 0 and math.isfinite(age)):
            raise ValueError(f"retention_max_age_s must be a positive number or None, got "
                             f"{age}")
