"""Stage 8: the job span and latency histogram around the handler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class JobMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "job"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return bool(config.tracing.function_name or config.metrics.histogram_name or config.metrics.threshold_ms)

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return False
