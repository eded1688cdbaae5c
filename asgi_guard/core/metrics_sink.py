"""Where a stage counts: the Prometheus collectors when metrics are on, else a no-op sink.

With metrics off (GuardSettings.metrics_path empty and metrics_collect false, the default, and no
registry handed to the runtime) nothing reads the counters, so `runtime.metrics` is this no-op object
and prometheus-client is never imported.
"""

from __future__ import annotations

from typing import Any


class _NullMetric:
    """Stands in for a Counter / Gauge / Histogram and any labelled child of one."""

    __slots__ = ()

    def labels(self, *args: Any, **kwargs: Any) -> _NullMetric:
        return self

    def inc(self, amount: float = 1.0) -> None:
        pass

    def dec(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


class _NullMetrics:
    """A GuardMetrics look-alike whose every collector is the no-op metric."""

    def __getattr__(self, name: str) -> _NullMetric:
        return NULL_METRIC


NULL_METRIC = _NullMetric()
NULL_METRICS = _NullMetrics()
