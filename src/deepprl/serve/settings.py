"""Service settings: one frozen dataclass, every field with a default and a docstring."""

from __future__ import annotations

from dataclasses import dataclass

API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "DEEPPRL_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """Limits and access control of `deepprl serve`."""

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
    future_tolerance_s: float = 86_400.0
    """How far past the server's clock a feedback timestamp may lie (clock skew)."""

    def __post_init__(self) -> None:
        for name in ("max_k", "max_candidates", "max_body_bytes", "inference_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key must not be empty")
        if not self.future_tolerance_s >= 0:
            raise ValueError(f"future_tolerance_s must be >= 0, got {self.future_tolerance_s}")
