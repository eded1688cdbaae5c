"""Prometheus metrics and the exposition endpoint (placeholder until the telemetry issue lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from ..runtime import GuardRuntime


def metrics_endpoint(runtime: GuardRuntime) -> ASGIApp:
    """The ASGI app served at GuardSettings.metrics_path."""
    return PlainTextResponse("", media_type="text/plain; version=0.0.4")
