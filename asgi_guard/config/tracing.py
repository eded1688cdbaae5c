"""Tracing labels (stages 1 and 8)."""

from __future__ import annotations

from ._base import GuardModel


class TracingConfig(GuardModel):
    function_name: str | None = None
    trace_label: str | None = None
