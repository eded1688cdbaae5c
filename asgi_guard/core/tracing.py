"""OpenTelemetry: the server span, per-stage child spans, and W3C trace-context propagation.

Only the OpenTelemetry API is used, with the global tracer provider (never set here). Until an SDK
provider is installed the API is a no-op, and the stack skips tracing work entirely: `tracing_active()`
is one isinstance check per request, and stage probes are built only when a provider exists at the time
the pipelines are built (configure the SDK before the app serves its first request).

Stage spans are written after the fact from timestamps the probes take: a stage's span covers its own
work up to the moment it hands the request on (or answers / rejects), not the handler's time, so the
tree shows siblings under the server span rather than a staircase of nested middlewares.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import NonRecordingSpan, Span, Status, StatusCode, Tracer, TracerProvider
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.problems import Problem

if TYPE_CHECKING:
    from asgi_guard.core.context import Decision, GuardContext
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.core.stage import RouteInfo, Stage

STAGES_KEY = "asgi_guard.stages"  # scope key: {stage name: probe record} while tracing
SELF_TRACED = frozenset({"telemetry", "job_span"})  # stages that make their own spans
_NOOP_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_active = False
_UNKNOWN = object()
_ENV_PROVIDER = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))  # the API builds one lazily from it

tracer = trace.get_tracer("asgi_guard")  # the global provider's (a runtime may own another)


def tracing_active() -> bool:
    """Whether a real tracer provider is installed (once it is, it stays: providers are set once).

    Called per request, so the common "nothing installed" answer avoids `get_tracer_provider()`,
    which consults os.environ on every call: the API keeps the installed provider in a module global.
    """
    global _active
    if _active:
        return True
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _ENV_PROVIDER:
        return False
    _active = not isinstance(trace.get_tracer_provider(), _NOOP_PROVIDERS)
    return _active


class GuardTracer:
    """One app's tracer: its own provider when the runtime was given one, else the global provider
    (looked up when used, never set). `active()` is what the stack asks per request: with the
    global provider it is `tracing_active` itself, with an own provider a constant."""

    __slots__ = ("active", "provider", "tracer")

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: Tracer = tracer if provider is None else provider.get_tracer("asgi_guard")
        self.active: Callable[[], bool] = tracing_active
        if provider is not None:
            fixed = not isinstance(provider, _NOOP_PROVIDERS)
            self.active = lambda: fixed

    def stage_probe(self) -> Any:
        """For the chain builder: a stage factory that adds a probe, or None when nothing is traced."""
        return _probe if self.active() else None


def inject_trace_context(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`, baggage) in a dict.

    Empty when nothing is being traced. Put it in an event's properties; the consumer calls
    `extract_trace_context(properties)` to continue the trace.
    """
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier


def extract_trace_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """The OpenTelemetry context carried by `carrier` (for `tracer.start_as_current_span(context=...)`)."""
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside a sampled/valid span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


# -- server span ----------------------------------------------------------------------------------------
def server_span_middleware(
    app: ASGIApp, route: RouteInfo[Any], message_spans: bool, provider: TracerProvider | None = None
) -> ASGIApp:
    """opentelemetry-instrumentation-asgi around `app`, named from the registry's template (no scanning);
    spans go to `provider` (None: the global one)."""
    template = route.template
    attributes = {"http.route": template}
    names: dict[str, str] = {}

    def span_details(scope: Scope) -> tuple[str, dict[str, str]]:
        method = scope.get("method", "HTTP")
        name = names.get(method)
        if name is None:
            name = names[method] = f"{method} {template}"
        return name, attributes

    exclude: list[Literal["receive", "send"]] | None = None if message_spans else ["receive", "send"]
    middleware: ASGIApp = OpenTelemetryMiddleware(
        app, default_span_details=span_details, exclude_spans=exclude, tracer_provider=provider
    )
    return middleware


# -- stage probes ----------------------------------------------------------------------------------------
class _Handoff:
    """What a probed stage calls next: notes when the stage handed the request on."""

    __slots__ = ("app", "name")

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        records = scope.get(STAGES_KEY)
        if records is not None:
            record = records.get(self.name)
            if record is not None and record[2] == 0:
                record[2] = time.time_ns()
        await self.app(scope, receive, send)


class StageProbe:
    """Wraps one stage to time it (entry, hand-off, exit) for its span; costs nothing else."""

    __slots__ = ("name", "stage")

    def __init__(
        self, stage: type[Stage[Any]], app: ASGIApp, route: RouteInfo[Any], runtime: GuardRuntime
    ) -> None:
        self.name = stage.name
        self.stage = stage(_Handoff(app, stage.name), route, runtime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        records = scope.get(STAGES_KEY)
        if records is None:
            await self.stage(scope, receive, send)
            return
        # [parent span, start, hand-off, end, exception raised by the stage itself]
        record: list[Any] = [trace.get_current_span(), time.time_ns(), 0, 0, None]
        records[self.name] = record
        try:
            await self.stage(scope, receive, send)
        except BaseException as exc:
            if record[2] == 0:
                record[4] = exc
            raise
        finally:
            record[3] = time.time_ns()


def _probe(stage: type[Stage[Any]], app: ASGIApp, route: RouteInfo[Any], runtime: GuardRuntime) -> ASGIApp:
    if stage.name in SELF_TRACED:
        return stage(app, route, runtime)
    return StageProbe(stage, app, route, runtime)


def stage_probe() -> Any:
    """For the chain builder, with the global provider: a probing stage factory, or None (no-op)."""
    return _probe if tracing_active() else None


def decision_attributes(prefix: str, decision: Decision | None) -> dict[str, Any]:
    """A stage's `Decision` as span attributes `asgi_guard.<stage>.<key>` (scalars only)."""
    if decision is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in decision.fields().items():
        if value is None:
            continue
        out[f"{prefix}.{key}"] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


def emit_stage_spans(ctx: GuardContext, records: dict[str, list[Any]], tracer: Tracer = tracer) -> None:
    """One child span per stage that did work (decided something, answered, rejected or failed)."""
    for name, (parent, start, handoff, end, exc) in records.items():
        decision = ctx.decisions.get(name)
        if handoff:
            outcome, stop = "passed", handoff
        elif isinstance(exc, Problem) or ctx.rejected_by == name:
            outcome, stop = "rejected", end or time.time_ns()
        elif exc is not None:
            outcome, stop = "error", end or time.time_ns()
        else:
            outcome, stop = "answered", end or time.time_ns()
        if decision is None and outcome == "passed":
            continue
        prefix = "asgi_guard." + name
        attributes = decision_attributes(prefix, decision)
        attributes["asgi_guard.stage"] = name
        attributes["asgi_guard.outcome"] = outcome
        if isinstance(exc, Problem):
            attributes["asgi_guard.reason"] = exc.slug
            attributes["http.response.status_code"] = exc.status
        elif outcome != "passed" and ctx.status is not None:
            attributes["http.response.status_code"] = ctx.status
        parent_context = trace.set_span_in_context(parent) if _valid(parent) else None
        span = tracer.start_span(prefix, context=parent_context, start_time=start, attributes=attributes)
        if outcome == "error":
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
        span.end(end_time=stop)


def _valid(span: Span) -> bool:
    return not isinstance(span, NonRecordingSpan) or span.get_span_context().is_valid


def annotate_server_span(span: Span, ctx: GuardContext) -> None:
    """What the guard learned, on the server span (called at response start, before it ends)."""
    if not span.is_recording():
        return
    attributes: dict[str, Any] = {
        "asgi_guard.request_id": ctx.request_id,
        "asgi_guard.route": ctx.route.label,
    }
    if ctx.principal is not None:
        attributes["enduser.id"] = ctx.principal.subject
    if ctx.rejected_by:
        attributes["asgi_guard.rejected_by"] = ctx.rejected_by
    span.set_attributes(attributes)
