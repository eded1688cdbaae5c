"""Stage 7: circuit breaker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class CircuitBreakerMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "circuit_breaker"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.circuit_breaker.enabled

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return False
