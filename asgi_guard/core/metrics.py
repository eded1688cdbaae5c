"""Prometheus metrics shared by every stage, the per-route job histograms, and the exposition endpoint.

Each app's `GuardRuntime` owns a CollectorRegistry (default: prometheus-client's global REGISTRY); the
guard's collectors are get-or-create per registry, so building several apps in one process never fails
on duplicate names, and two apps given different registries share no counter. Stages read
`runtime.metrics` once at build time and keep the (labelled) children. Those children are lazy
(`LazyChild`): the real prometheus-client child (a lock and a value each, plus ~15 buckets for a
histogram: ~2-6 KB) is made on its first update, so 10,000 routes cost ~100 bytes each until used,
and a series appears in the exposition once it has counted something.
With PROMETHEUS_MULTIPROC_DIR set (several workers), prometheus-client's multiprocess mode writes each
worker's values to that directory and the endpoint aggregates them.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.errors import ConfigError
from asgi_guard.core.problems import Problem, method_not_allowed, send_problem

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.telemetry.metrics_config import MetricsConfig

C = TypeVar("C", Counter, Gauge, Histogram)
OTHER = "__other__"
NONE = "__none__"


_real_labels = MetricWrapperBase.labels


class LazyChild:
    """A labelled child of a metric, made on its first update (`inc`, `dec`, `set`, `observe`; any
    other attribute also makes it). Label values are checked now, as prometheus-client would."""

    __slots__ = ("_child", "_parent", "_values")

    def __init__(self, parent: MetricWrapperBase, values: tuple[str, ...]) -> None:
        self._parent = parent
        self._values = values
        self._child: Any = None

    def _get(self) -> Any:
        child = self._child
        if child is None:
            child = self._child = _real_labels(self._parent, *self._values)
        return child

    def inc(self, amount: float = 1) -> None:
        self._get().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._get().dec(amount)

    def set(self, value: float) -> None:
        self._get().set(value)

    def observe(self, amount: float) -> None:
        self._get().observe(amount)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


class _LazyLabels(MetricWrapperBase):
    """`labels(*values)` returns a LazyChild (keyword labels: prometheus-client's own, eager)."""

    def labels(self, *values: Any, **labelkwargs: Any) -> Any:
        if labelkwargs or not values:
            return super().labels(*values, **labelkwargs)
        if len(values) != len(self._labelnames):
            raise ValueError("Incorrect label count")
        return LazyChild(self, tuple(str(v) for v in values))


class LazyCounter(_LazyLabels, Counter):
    """A Counter whose labelled children are made on first use."""


class LazyGauge(_LazyLabels, Gauge):
    """A Gauge whose labelled children are made on first use."""


class LazyHistogram(_LazyLabels, Histogram):
    """A Histogram whose labelled children are made on first use."""


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


class _Collectors:
    """The collectors asgi-guard made in one registry, by name (prometheus-client has no public
    getter, and a registry refuses a second collector of one name: apps sharing a registry share
    these)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.made: dict[str, Counter | Gauge | Histogram] = {}
        self.checked: dict[tuple[type, str, tuple[str, ...]], Counter | Gauge | Histogram] = {}
        self.lock = threading.Lock()

    def get(self, kind: type[C], name: str, labels: Sequence[str], factory: Callable[[], C]) -> C:
        """The collector called `name`, created if absent; a clash of kind or labels is an error."""
        checked = self.checked.get((kind, name, tuple(labels)))
        if checked is not None:  # asked before with this kind and labels (10,000 routes ask 10,000 times)
            return checked  # type: ignore[return-value]
        found = self._get(kind, name, labels, factory)
        self.checked[(kind, name, tuple(labels))] = found
        return found

    def _get(self, kind: type[C], name: str, labels: Sequence[str], factory: Callable[[], C]) -> C:
        with self.lock:
            found = self.made.get(name)
            if found is None:
                try:
                    made = factory()
                except ValueError:  # the name is taken in this registry by a collector not ours
                    raise ConfigError(f"metric {name!r} is already registered by someone else") from None
                self.made[name] = made
                return made
        if isinstance(found, kind) and tuple(found._labelnames) == tuple(labels):
            return found
        raise ConfigError(f"metric {name!r} is already registered as something else (kind or labels differ)")


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, tuple[_Collectors, GuardMetrics]] = (
    weakref.WeakKeyDictionary()
)
_BY_REGISTRY_LOCK = threading.Lock()


def _collectors(registry: CollectorRegistry) -> tuple[_Collectors, GuardMetrics]:
    with _BY_REGISTRY_LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            collectors = _Collectors(registry)
            found = _BY_REGISTRY[registry] = (collectors, _build(collectors))
        return found


def metrics_for(registry: CollectorRegistry) -> GuardMetrics:
    """The guard's metrics in `registry` (made on first use; apps sharing a registry share them)."""
    return _collectors(registry)[1]


def get_metrics() -> GuardMetrics:
    """The metrics in prometheus-client's global REGISTRY (a runtime's are `runtime.metrics`)."""
    return metrics_for(REGISTRY)


def _build(made: _Collectors) -> GuardMetrics:
    registry = made.registry

    def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return made.get(Counter, name, labels, lambda: LazyCounter(name, doc, labels, registry=registry))

    def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return made.get(
            Gauge,
            name,
            labels,
            lambda: LazyGauge(name, doc, labels, multiprocess_mode="max", registry=registry),
        )

    return GuardMetrics(
        requests=counter(
            "asgi_guard_requests", "Requests by route, method and status", ["route", "method", "status"]
        ),
        request_latency=made.get(
            Histogram,
            "asgi_guard_request_duration_seconds",
            ["route"],
            lambda: LazyHistogram(
                "asgi_guard_request_duration_seconds",
                "Whole-stack request latency",
                ["route"],
                registry=registry,
            ),
        ),
        rejections=counter(
            "asgi_guard_rejections", "Requests rejected, by stage and reason", ["route", "stage", "reason"]
        ),
        rate_limit=counter(
            "asgi_guard_rate_limit_decisions", "Rate-limit decisions", ["route", "policy", "decision"]
        ),
        cache=counter("asgi_guard_cache_lookups", "Response-cache lookups by result", ["route", "result"]),
        credits=counter("asgi_guard_credits", "Credit operations", ["route", "credit_type", "action"]),
        circuit_state=gauge(
            "asgi_guard_circuit_state", "Circuit state: 0 closed, 1 half-open, 2 open", ["route"]
        ),
        circuit_transitions=counter(
            "asgi_guard_circuit_transitions", "Circuit state changes", ["route", "state"]
        ),
        events=counter("asgi_guard_events", "Pulsar events by outcome", ["topic", "outcome"]),
        outbox_size=gauge("asgi_guard_outbox_size", "Events waiting in the local outbox"),
        outbox_oldest_age=gauge(
            "asgi_guard_outbox_oldest_age_seconds", "Age of the oldest event in the outbox"
        ),
        backend_faults=counter(
            "asgi_guard_backend_faults", "Backend calls that failed or timed out", ["route", "stage"]
        ),
    )


# -- the job histogram (stage 8) ---------------------------------------------------------------------
def job_histogram(config: MetricsConfig, registry: CollectorRegistry | None = None) -> Histogram:
    """The histogram named by a route's MetricsConfig, in `registry` (default: the global one);
    routes may share one if they agree on labels."""
    name = config.histogram_name
    if not name:
        raise ConfigError("job_histogram() needs metrics.histogram_name")
    labels = ("route",) if config.histogram_label == "route" else ("route", "resource_id")
    kwargs: dict[str, Any] = {}
    if config.buckets:
        kwargs["buckets"] = config.buckets
    made = _collectors(REGISTRY if registry is None else registry)[0]
    return made.get(
        Histogram,
        name,
        labels,
        lambda: LazyHistogram(name, config.histogram_description, labels, registry=made.registry, **kwargs),
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
class _ConstantLabels:
    """A collector serving another registry's families with constant labels added to each sample."""

    def __init__(self, source: CollectorRegistry, labels: dict[str, str]) -> None:
        self.source, self.labels = source, labels

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():  # some collectors yield cached families: copy, never mutate
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [s._replace(labels={**self.labels, **s.labels}) for s in family.samples]
            yield labelled


def _render(
    accept: str, registry: CollectorRegistry, labels: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """Exposition text of `registry`, or of every worker in multiprocess mode (reads files: off-loop),
    with GuardSettings.metrics_labels added to every sample."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    if labels:
        labelled = CollectorRegistry(auto_describe=False)
        labelled.register(_ConstantLabels(registry, labels))
        registry = labelled
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def metrics_endpoint(runtime: GuardRuntime) -> ASGIApp:
    """The ASGI app served at GuardSettings.metrics_path; with `metrics_token` set it wants that Bearer."""
    token = runtime.settings.metrics_token
    registry = runtime.metrics_registry
    labels = dict(runtime.settings.metrics_labels)
    expected = b"bearer " + token.get_secret_value().encode() if token is not None else None

    async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await send_problem(
                send,
                method_not_allowed(method, "GET, HEAD"),
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
        body, content_type = await asyncio.to_thread(_render, accept, registry, labels)
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
