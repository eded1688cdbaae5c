"""Stage 9: Pulsar event publishing and job offload."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class EventsMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "events"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.pulsar_labeling.enabled

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return config.pulsar_labeling.enabled and config.pulsar_labeling.mode == 'offload'
