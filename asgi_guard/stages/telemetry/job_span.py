"""Stage 8: the job span (`TracingConfig.function_name`) and latency histogram around the handler."""

from __future__ import annotations

from collections.abc import Hashable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY
from asgi_guard.core.metrics import LabelCap, job_histogram
from asgi_guard.core.problems import Problem
from asgi_guard.core.stage import RouteInfo, Stage, section_key

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from asgi_guard.core.context import GuardContext
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.telemetry.config import TelemetryConfig


class JobSpanMiddleware(Stage["TelemetryConfig"]):
    """Times the job (the handler and the stages inside it) into the route's histogram, under its
    span. "Job" here is the route's unit of work around the handler: not the route's `JobConfig`,
    and not an offloaded job (the events stage's `offload` mode)."""

    name = "job_span"
    section = "telemetry"

    def __init__(self, app: ASGIApp, route: RouteInfo[TelemetryConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        self._tracing = runtime.tracing
        self._active = runtime.tracing.active  # a bound check, one call per request
        tracing, metrics = self.config.tracing, self.config.metrics
        self._span_name = tracing.function_name or (f"job {route.label}" if tracing.trace_label else None)
        self._attributes: dict[str, Any] = {"asgi_guard.route": route.label, "http.route": route.template}
        if tracing.function_name:
            self._attributes["code.function"] = tracing.function_name
        if tracing.trace_label:
            self._attributes["asgi_guard.trace_label"] = tracing.trace_label
        self._histogram: Histogram | None = None
        self._by_route: Any = None
        self._cap: LabelCap | None = None
        if metrics.histogram_name:
            self._histogram = job_histogram(metrics, runtime.metrics_registry)
            if metrics.histogram_label == "route":
                self._by_route = self._histogram.labels(route.label)
            else:
                self._cap = LabelCap(metrics.resource_id_cap)

    @classmethod
    def validation_key(cls, config: TelemetryConfig) -> Hashable:
        """Only the histogram can fail to build (a metric name clash): span names and labels are
        per route and cannot."""
        return section_key(config.metrics)

    @classmethod
    def enabled_for(cls, config: TelemetryConfig) -> bool:
        return bool(
            config.tracing.function_name or config.tracing.trace_label or config.metrics.histogram_name
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        resource_id = ctx.resource_id
        started = perf_counter()
        try:
            if self._span_name is not None and self._active():
                await self._traced(ctx, resource_id, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            elapsed = perf_counter() - started
            if self._by_route is not None:
                self._by_route.observe(elapsed)
            elif self._cap is not None and self._histogram is not None:
                self._histogram.labels(self.route.label, self._cap(resource_id)).observe(elapsed)
            ctx.decide(self.name, "allowed", duration_ms=round(elapsed * 1000.0, 3))

    async def _traced(
        self, ctx: GuardContext, resource_id: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        attributes = dict(self._attributes)
        attributes["asgi_guard.request_id"] = ctx.request_id
        if resource_id is not None:
            attributes["asgi_guard.resource_id"] = resource_id
        span = self._tracing.tracer.start_span(self._span_name or "job", attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))  # cheaper than trace.use_span
        try:
            await self.app(scope, receive, send)
        except Problem as problem:
            span.set_attribute("asgi_guard.rejected", problem.slug)
            span.set_attribute("http.response.status_code", problem.status)
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        else:
            if ctx.status is not None:
                span.set_attribute("http.response.status_code", ctx.status)
                if ctx.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
        finally:
            otel_context.detach(token)
            span.end()
