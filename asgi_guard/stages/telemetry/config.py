"""Tracing labels (stages 1 and 8), and the telemetry section both telemetry stages read."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel
from asgi_guard.stages.telemetry.metrics_config import MetricsConfig


class TracingConfig(GuardModel):
    function_name: str | None = Field(default=None, description="name of the job span around the handler")
    trace_label: str | None = Field(
        default=None, description="label carried on the job span and in limit keys"
    )
    message_spans: bool = Field(
        default=False, description="also make a span per ASGI send/receive message (off: they are noise)"
    )
    stage_spans: bool = Field(
        default=False,
        description=(
            "also make a child span per stage that decided (off: each stage's decision is an attribute "
            "`asgi_guard.<stage>.<field>` on the one server span, which costs far less)"
        ),
    )


class TelemetryConfig(GuardModel):
    """What stages 1 and 8 read: `JobConfig.telemetry` builds it from the route's `tracing`,
    `metrics` and `redact_fields`."""

    tracing: TracingConfig = TracingConfig()
    metrics: MetricsConfig = MetricsConfig()
    redact_fields: tuple[str, ...] = ()
