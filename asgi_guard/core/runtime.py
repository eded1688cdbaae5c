"""GuardRuntime: the services every route's pipeline of one app shares (backend, clients, keys), and
what the app owns alone: its metrics registry, its log redactor and its tracer. Two apps in one
process each have their own runtime, so they share none of these unless the user hands them the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgi_guard.core.metrics_sink import NULL_METRICS
from asgi_guard.core.otel_gate import NO_TRACING, tracing_possible
from asgi_guard.core.redaction import Redactor
from asgi_guard.core.settings import GuardSettings
from asgi_guard.core.tally import DecisionTally
from asgi_guard.state import Backend, backend_from_settings

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from asgi_guard.core.metrics import GuardMetrics
    from asgi_guard.core.pooling import PoolingConfig
    from asgi_guard.core.tracing import GuardTracer

T = TypeVar("T")
Hook = Callable[[], Awaitable[None]]
log = logging.getLogger("asgi_guard")


class GuardRuntime:
    """Built once per app. Stages fetch shared services with `service(key, factory)`.

    - `metrics_registry`: where the app's Prometheus collectors live and what its metrics endpoint
      serves (default: prometheus-client's global `REGISTRY`, for users who expect it there). Apps
      sharing a registry share its collectors; building several never fails on duplicate names.
      Metrics are counted when `settings.metrics_on` or a registry is given; otherwise `metrics` is a
      no-op sink and prometheus-client is not even imported.
    - `tracer_provider`: the OpenTelemetry provider the app's spans go to (default: the global one,
      looked up when used; asgi-guard never sets it). Until OpenTelemetry's API is imported (or
      OTEL_PYTHON_TRACER_PROVIDER names a provider) no provider can exist, so `tracing` is a no-op
      stand-in and OpenTelemetry is not imported.
    - `redactor`: the log-scrubbing rules of this app (built-in secret names plus its routes'
      `redact_fields`); the process-wide `redaction_filter()` applies the rules of the app serving
      the request being logged.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        backend: Backend | None = None,
        *,
        metrics_registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.settings = settings or GuardSettings()
        self.backend = backend or backend_from_settings(self.settings)
        self._metrics_registry = metrics_registry
        # the console reads some collectors (circuit states), so it needs them too
        if metrics_registry is not None or self.settings.metrics_on or self.settings.console_path:
            from asgi_guard.core.metrics import metrics_for

            self.metrics: GuardMetrics = metrics_for(self.metrics_registry)
        else:  # metrics off: nothing would read the counters
            self.metrics = cast("GuardMetrics", NULL_METRICS)
        self._tracer_provider = tracer_provider
        self._tracing: GuardTracer | None = None
        if tracer_provider is not None:
            from asgi_guard.core.tracing import GuardTracer

            self._tracing = GuardTracer(tracer_provider)
        self.redactor = redactor or Redactor()
        self._services: dict[str, Any] = {}
        # decision counts for the operator console: None (no per-request cost) unless it is on
        self.tally: DecisionTally | None = DecisionTally() if self.settings.console_path else None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._started = False
        self._stopped = False
        self._lock: asyncio.Lock | None = None

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The app's Prometheus registry (prometheus-client's global one unless given)."""
        if self._metrics_registry is None:
            from prometheus_client import REGISTRY

            self._metrics_registry = REGISTRY
        return self._metrics_registry

    @property
    def has_tracer_provider(self) -> bool:
        """Whether the app was given its own tracer provider."""
        return self._tracer_provider is not None

    @property
    def tracing(self) -> GuardTracer:
        """The app's tracer (see the class docstring): a no-op stand-in while no provider can exist."""
        found = self._tracing
        if found is None:
            if not tracing_possible():
                return cast("GuardTracer", NO_TRACING)
            from asgi_guard.core.tracing import GuardTracer

            found = self._tracing = GuardTracer(None)
        return found

    def service(self, key: str, factory: Callable[[], T]) -> T:
        """The shared instance for `key`, created on first request by `factory`."""
        found = self._services.get(key)
        if found is None:
            found = self._services[key] = factory()
        return found

    def existing_service(self, key: str) -> Any:
        """The shared instance for `key` if something created it, else None (creates nothing)."""
        return self._services.get(key)

    def enable_tally(self) -> DecisionTally:
        """Turn on the console's decision counts; call before `install()` (the telemetry stage,
        which feeds them, is left out of pipelines built while nothing needs it)."""
        if self.tally is None:
            self.tally = DecisionTally()
        return self.tally

    def backend_for(self, pooling: PoolingConfig | None) -> Backend:
        """The backend as a route with `pooling` sees it: each call bounded by its socket_timeout."""
        if pooling is None:
            return self.backend
        return self.backend.bounded(pooling.socket_timeout)

    def on_startup(self, hook: Hook) -> None:
        if self._started:
            raise RuntimeError("on_startup() after start-up; register hooks while building pipelines")
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self._shutdown.append(hook)

    @property
    def started(self) -> bool:
        return self._started

    async def startup(self) -> None:
        """Connect the backend and run start-up hooks once (lifespan, or the first request)."""
        if self._started:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._started:
                return
            await self.backend.start()
            for hook in self._startup:
                await hook()
            self._started = True

    async def shutdown(self) -> None:
        """Run shutdown hooks in reverse order, then close the backend; errors are logged."""
        if self._stopped:
            return
        self._stopped = True
        for hook in reversed(self._shutdown):
            try:
                await hook()
            except Exception:
                log.exception("asgi-guard shutdown hook failed")
        await self.backend.close()
