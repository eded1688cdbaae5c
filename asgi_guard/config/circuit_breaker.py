"""Circuit-breaker policy (stage 7)."""

from __future__ import annotations

from pydantic import Field

from ._base import GuardModel


class CircuitBreakerConfig(GuardModel):
    enabled: bool = False
    circuit_breaker_threshold: int = Field(default=5, ge=1)
    circuit_breaker_timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=0, ge=0)
    retry_backoff: float = Field(default=0.1, ge=0)
    fail_open: bool = True
