"""Whether OpenTelemetry tracing can be on, answered without importing OpenTelemetry.

A tracer provider is installed through `opentelemetry.trace` (so the API module is imported first),
or named by OTEL_PYTHON_TRACER_PROVIDER, which the API reads on first use. When neither holds, no
provider can exist yet, and the stack need not import OpenTelemetry or its ASGI instrumentation.
Like the probes themselves, this is checked when the pipelines are built: configure the SDK first.
"""

from __future__ import annotations

import os
import sys


def tracing_possible() -> bool:
    """False only when no tracer provider can be installed yet (then `tracing_active()` is False too)."""
    return "opentelemetry.trace" in sys.modules or bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))


class _NoTracing:
    """Stands in for `core.tracing.GuardTracer` while no tracer provider can exist."""

    __slots__ = ()
    provider = None

    @staticmethod
    def active() -> bool:
        return False

    @staticmethod
    def stage_probe(stage_spans: bool = True) -> None:
        return None


NO_TRACING = _NoTracing()
