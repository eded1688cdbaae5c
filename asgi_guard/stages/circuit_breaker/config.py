"""Circuit-breaker policy (stage 7)."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel


class CircuitBreakerConfig(GuardModel):
    enabled: bool = Field(default=False, description="turn stage 7 on for the route")
    circuit_breaker_threshold: int = Field(
        default=5, ge=1, description="consecutive failures (exception, 5xx, time-out) that open the circuit"
    )
    circuit_breaker_timeout: float = Field(
        default=30.0, gt=0, description="seconds the circuit stays open before one trial call"
    )
    max_retries: int = Field(
        default=0, ge=0, description="extra attempts, only for idempotent methods or an Idempotency-Key"
    )
    retry_backoff: float = Field(default=0.1, ge=0, description="seconds before retry n: backoff * 2**(n-1)")
    fail_open: bool = Field(default=True, description="admit calls while the shared state is unreachable")
    half_open_lease: float | None = Field(
        default=None,
        gt=0,
        description="seconds a half-open trial holds its slot (default: handler_timeout, else the timeout)",
    )
