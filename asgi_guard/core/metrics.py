"""Prometheus metrics shared by every stage, the per-route job histograms, and the exposition endpoint.

Collectors are get-or-create per process, so building several apps in one process never fails on
duplicate names. Stages call `get_metrics()` once at build time and keep the (labelled) children.
With PROMETHEUS_MULTIPROC_DIR set (several workers), prometheus-client's multiprocess mode writes each
worker's values to that directory and the endpoint aggregates them.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.errors import ConfigError
from asgi_guard.core.problems import Problem, send_problem

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.telemetry.metrics_config import MetricsConfig

C = TypeVar("C", Counter, Gauge, Histogram)
OTHER = "__other__"
NONE = "__none__"


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


def _get_or_create(kind: type[C], name: str, labels: Sequence[str], factory: Callable[[], C]) -> C:
    """The registered collector called `name`, created if absent; a clash of kind or labels is an error."""
    try:
        return factory()
    except ValueError:
        found = REGISTRY._names_to_collectors.get(name)  # prometheus-client has no public getter
        if isinstance(found, kind) and tuple(found._labelnames) == tuple(labels):
            return found
        raise ConfigError(
            f"metric {name!r} is already registered as something else (kind or labels differ)"
        ) from None


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    return _get_or_create(Counter, name, labels, lambda: Counter(name, doc, labels))


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return _get_or_create(Gauge, name, labels, lambda: Gauge(name, doc, labels, multiprocess_mode="max"))


_METRICS: GuardMetrics | None = None


def get_metrics() -> GuardMetrics:
    """The process-wide metrics (created on first use)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = GuardMetrics(
            requests=_counter(
                "asgi_guard_requests", "Requests by route, method and status", ["route", "method", "status"]
            ),
            request_latency=_get_or_create(
                Histogram,
                "asgi_guard_request_duration_seconds",
                ["route"],
                lambda: Histogram(
                    "asgi_guard_request_duration_seconds", "Whole-stack request latency", ["route"]
                ),
            ),
            rejections=_counter(
                "asgi_guard_rejections",
                "Requests rejected, by stage and reason",
                ["route", "stage", "reason"],
            ),
            rate_limit=_counter(
                "asgi_guard_rate_limit_decisions", "Rate-limit decisions", ["route", "policy", "decision"]
            ),
            cache=_counter(
                "asgi_guard_cache_lookups", "Response-cache lookups by result", ["route", "result"]
            ),
            credits=_counter("asgi_guard_credits", "Credit operations", ["route", "credit_type", "action"]),
            circuit_state=_gauge(
                "asgi_guard_circuit_state", "Circuit state: 0 closed, 1 half-open, 2 open", ["route"]
            ),
            circuit_transitions=_counter(
                "asgi_guard_circuit_transitions", "Circuit state changes", ["route", "state"]
            ),
            events=_counter("asgi_guard_events", "Pulsar events by outcome", ["topic", "outcome"]),
            outbox_size=_gauge("asgi_guard_outbox_size", "Events waiting in the local outbox"),
            outbox_oldest_age=_gauge(
                "asgi_guard_outbox_oldest_age_seconds", "Age of the oldest event in the outbox"
            ),
            backend_faults=_counter(
                "asgi_guard_backend_faults", "Backend calls that failed or timed out", ["route", "stage"]
            ),
        )
    return _METRICS


# -- the job histogram (stage 8) ---------------------------------------------------------------------
def job_histogram(config: MetricsConfig) -> Histogram:
    """The histogram named by a route's MetricsConfig; routes may share one if they agree on labels."""
    name = config.histogram_name
    if not name:
        raise ConfigError("job_histogram() needs metrics.histogram_name")
    labels = ("route",) if config.histogram_label == "route" else ("route", "resource_id")
    kwargs: dict[str, Any] = {}
    if config.buckets:
        kwargs["buckets"] = config.buckets
    return _get_or_create(
        Histogram, name, labels, lambda: Histogram(name, config.histogram_description, labels, **kwargs)
    )


class LabelCap:
    """Admits up to `cap` distinct label values (per process); later newcomers become "__other__"."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return NONE
        value = value[:128]
        seen = self.seen
        if value in seen:
            return value
        if len(seen) < self.cap:
            seen.add(value)
            return value
        return OTHER


# -- exposition ---------------------------------------------------------------------------------------
def _render(accept: str) -> tuple[bytes, str]:
    """Exposition text of this process, or of every worker in multiprocess mode (reads files: off-loop)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry: CollectorRegistry = REGISTRY
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def metrics_endpoint(runtime: GuardRuntime) -> ASGIApp:
    """The ASGI app served at GuardSettings.metrics_path; with `metrics_token` set it wants that Bearer."""
    token = runtime.settings.metrics_token
    expected = b"bearer " + token.get_secret_value().encode() if token is not None else None

    async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await send_problem(
                send,
                Problem(
                    405,
                    "method-not-allowed",
                    "Method Not Allowed",
                    f"{method} is not allowed here",
                    headers=[(b"allow", b"GET, HEAD")],
                ),
            )
            return
        accept = ""
        supplied: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                supplied = value
            elif name == b"accept":
                accept = value.decode("latin-1")
        if expected is not None and not _token_ok(supplied, expected):
            error = b'Bearer realm="metrics"' + (b', error="invalid_token"' if supplied else b"")
            await send_problem(
                send,
                Problem(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "a valid metrics bearer token is required",
                    headers=[(b"www-authenticate", error)],
                ),
            )
            return
        body, content_type = await asyncio.to_thread(_render, accept)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return metrics_app


def _token_ok(supplied: bytes | None, expected: bytes) -> bool:
    if supplied is None or len(supplied) != len(expected):
        return False
    # Scheme is case-insensitive (RFC 7235); the token is compared in constant time.
    return supplied[:7].lower() == expected[:7] and hmac.compare_digest(supplied[7:], expected[7:])
