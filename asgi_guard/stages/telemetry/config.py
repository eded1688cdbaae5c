"""Tracing labels (stages 1 and 8)."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel


class TracingConfig(GuardModel):
    function_name: str | None = Field(default=None, description="name of the job span around the handler")
    trace_label: str | None = Field(
        default=None, description="label carried on the job span and in limit keys"
    )
    message_spans: bool = Field(
        default=False, description="also make a span per ASGI send/receive message (off: they are noise)"
    )
