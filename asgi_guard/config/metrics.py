"""Metrics for the job histogram around the handler (stage 8)."""

from __future__ import annotations

from pydantic import Field

from ._base import GuardModel


class MetricsConfig(GuardModel):
    histogram_name: str | None = None
    histogram_description: str = "Handler latency in seconds"
    histogram_label: str = Field(default="route", description='"route" (template) or "resource_id"')
    threshold_ms: float | None = Field(default=None, gt=0, description="slow-request warning threshold")
