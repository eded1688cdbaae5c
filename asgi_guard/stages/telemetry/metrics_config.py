"""Metrics for the job histogram around the handler (stage 8) and the slow-request warning (stage 1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from asgi_guard.core.model import GuardModel


class MetricsConfig(GuardModel):
    histogram_name: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="Prometheus name of the job histogram",
    )
    histogram_description: str = Field(
        default="Handler latency in seconds", description="help text of the route's histogram"
    )
    histogram_label: Literal["route", "resource_id"] = Field(
        default="route",
        description='"route" (the route label) or "resource_id" (capped, see resource_id_cap)',
    )
    resource_id_cap: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description='distinct resource ids per route and process before new ones count as "__other__"',
    )
    buckets: tuple[float, ...] | None = Field(
        default=None, description="histogram buckets in seconds (default: prometheus-client's)"
    )
    threshold_ms: float | None = Field(default=None, gt=0, description="slow-request warning threshold")
