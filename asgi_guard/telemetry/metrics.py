"""Prometheus metrics shared by every stage, and the exposition endpoint.

Collectors are created once per process (get-or-create), so building several apps in one process
never fails on duplicate names. Stages call `get_metrics()` once at build time and keep the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from ..runtime import GuardRuntime


@dataclass(frozen=True)
class GuardMetrics:
    requests: Counter  # labels: route, method, status
    request_latency: Histogram  # labels: route
    rejections: Counter  # labels: route, stage, reason
    rate_limit: Counter  # labels: route, policy, decision (allowed / rejected / shadow_rejected)
    cache: Counter  # labels: route, result (hit / miss / bypass / error)
    credits: Counter  # labels: route, credit_type, action (reserved / committed / refunded / insufficient)
    circuit_state: Gauge  # labels: route; 0 closed, 1 half-open, 2 open
    circuit_transitions: Counter  # labels: route, state
    events: Counter  # labels: topic, outcome (published / failed / outboxed / drained)
    outbox_size: Gauge
    outbox_oldest_age: Gauge  # seconds
    backend_faults: Counter  # labels: route, stage


_METRICS: GuardMetrics | None = None


def get_metrics() -> GuardMetrics:
    """The process-wide metrics (created on first use)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = GuardMetrics(
            requests=Counter("asgi_guard_requests", "Requests by route, method and status",
                             ["route", "method", "status"]),
            request_latency=Histogram("asgi_guard_request_duration_seconds",
                                      "Whole-stack request latency", ["route"]),
            rejections=Counter("asgi_guard_rejections", "Requests rejected, by stage and reason",
                               ["route", "stage", "reason"]),
            rate_limit=Counter("asgi_guard_rate_limit_decisions", "Rate-limit decisions",
                               ["route", "policy", "decision"]),
            cache=Counter("asgi_guard_cache_lookups", "Response-cache lookups by result", ["route", "result"]),
            credits=Counter("asgi_guard_credits", "Credit operations", ["route", "credit_type", "action"]),
            circuit_state=Gauge("asgi_guard_circuit_state", "Circuit state: 0 closed, 1 half-open, 2 open",
                                ["route"], multiprocess_mode="max"),
            circuit_transitions=Counter("asgi_guard_circuit_transitions", "Circuit state changes",
                                        ["route", "state"]),
            events=Counter("asgi_guard_events", "Pulsar events by outcome", ["topic", "outcome"]),
            outbox_size=Gauge("asgi_guard_outbox_size", "Events waiting in the local outbox",
                              multiprocess_mode="max"),
            outbox_oldest_age=Gauge("asgi_guard_outbox_oldest_age_seconds",
                                    "Age of the oldest event in the outbox", multiprocess_mode="max"),
            backend_faults=Counter("asgi_guard_backend_faults", "Backend calls that failed or timed out",
                                   ["route", "stage"]),
        )
    return _METRICS


def metrics_endpoint(runtime: GuardRuntime) -> ASGIApp:
    """The ASGI app served at GuardSettings.metrics_path (placeholder until the telemetry issue)."""
    return PlainTextResponse("", media_type="text/plain; version=0.0.4")
