"""Stage 5: response cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class CacheMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "cache"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.cache.enabled

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return False
