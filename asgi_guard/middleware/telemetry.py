"""Stage 1: server span, request metrics, redacted access log (outermost, so rejections count)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class TelemetryMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "telemetry"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return True

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return False
