"""Stage 4: Idempotency-Key replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class IdempotencyMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "idempotency"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.idempotency.enabled

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return config.idempotency.enabled
