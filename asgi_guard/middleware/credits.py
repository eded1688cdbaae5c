"""Stage 6: credits reserve / commit / refund."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class CreditsMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "credits"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.required_credits > 0

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return False
