"""Stage 3: rate limiting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class RateLimitMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "rate_limit"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.rate_limit.enabled

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return config.resource_id_from_body
