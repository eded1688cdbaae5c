"""OpenTelemetry: the server span, per-stage child spans, and W3C trace-context propagation.

Only the OpenTelemetry API is used, with the global tracer provider (never set here). Until an SDK
provider is installed the API is a no-op, and the stack skips tracing work entirely: `tracing_active()`
is one isinstance check per request, and stage probes are built only when a provider exists at the time
the pipelines are built (configure the SDK before the app serves its first request).

One span per request by default: the server span (`ServerSpan`, or the span an outer instrumentation
already opened for the request: FastAPI's own telemetry, `OpenTelemetryMiddleware`), carrying each
stage's decision as attributes `asgi_guard.<stage>.<field>`. Spans cost ~20-40 µs each in the SDK,
more than most stages' own work, so per-stage child spans are opt-in (`tracing.stage_spans`).

Stage spans are written after the fact from timestamps the probes take: a stage's span covers its own
work up to the moment it hands the request on (or answers / rejects), not the handler's time, so the
tree shows siblings under the server span rather than a staircase of nested middlewares.
"""

from __future__ import annotations

import os
import time
from asyncio import CancelledError
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY
from asgi_guard.core.problems import Problem
from asgi_guard.core.proxies import UNKNOWN

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

    def stage_probe(self, stage_spans: bool = True) -> Any:
        """For the chain builder: a stage factory that adds a probe, or None when nothing is traced
        or the route wants no per-stage spans (`tracing.stage_spans` off)."""
        return _probe if stage_spans and self.active() else None


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
class _ScopeHeaders(Getter[Scope]):
    """Reads propagation headers straight from an ASGI scope (no Headers object per request)."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier["headers"] if header == name]
        if not values:
            return None
        return [",".join(values)] if key == "baggage" else values

    def keys(self, carrier: Scope) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier["headers"]]


_SCOPE_HEADERS = _ScopeHeaders()
_fields_cache: tuple[Any, frozenset[bytes]] = (None, frozenset())


def parent_context(scope: Scope) -> otel_context.Context | None:
    """The caller's trace context from the request headers (W3C `traceparent` etc.), or None when the
    request carries none of the propagator's headers (the common case: no extraction work at all)."""
    global _fields_cache
    textmap = propagate.get_global_textmap()
    cached, fields = _fields_cache
    if cached is not textmap:
        fields = frozenset(f.lower().encode("latin-1") for f in textmap.fields)
        _fields_cache = (textmap, fields)
    for header, _ in scope["headers"]:
        if header in fields:
            return textmap.extract(scope, getter=_SCOPE_HEADERS)
    return None


def outer_server_span(scope: Scope) -> Span | None:
    """The server span an outer instrumentation already opened for this request, if any: FastAPI's own
    telemetry (0.165+, on once a tracer provider exists; `scope["fastapi.telemetry"].span`) or an
    `OpenTelemetryMiddleware` outside the guard (the current span, recording, of kind SERVER). The guard
    then annotates that span instead of opening a second one: one server span per request."""
    current = trace.get_current_span()
    if current.is_recording() and getattr(current, "kind", None) is SpanKind.SERVER:
        return current
    request_telemetry = scope.get("fastapi.telemetry")  # its span, should it not be current
    if request_telemetry is not None:
        span = getattr(request_telemetry, "span", None)
        if span is not None and span.is_recording():
            return span  # type: ignore[no-any-return]
    return None


class ServerSpan:
    """The request's one server span around `app` (the telemetry stage's inner work), named
    `"{method} {route template}"` with the stable HTTP semantic-convention attributes, and annotated
    with the guard's decisions before it ends. When an outer instrumentation already opened a server span
    (`outer_server_span`), that span is annotated instead and no span is made.

    Leaner than `OpenTelemetryMiddleware` (which `tracing.message_spans` still uses): no Headers object,
    no propagation work unless the request carries trace headers, no send/receive wrappers.
    """

    __slots__ = ("app", "names", "reuse_outer", "template", "tracer")

    def __init__(self, app: ASGIApp, template: str, tracer: Tracer, reuse_outer: bool = True) -> None:
        self.app = app
        self.template = template
        self.tracer = tracer
        # an app given its own provider (GuardRuntime(tracer_provider=...)) keeps its spans there,
        # rather than annotating a span of the global provider's (FastAPI's)
        self.reuse_outer = reuse_outer
        self.names: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        outer = outer_server_span(scope) if self.reuse_outer else None
        if outer is not None:
            await self._annotate_outer(outer, ctx, scope, receive, send)
            return
        method: str = scope["method"]
        name = self.names.get(method)
        if name is None:
            name = self.names[method] = f"{method} {self.template}"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.route": self.template,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        if ctx.client_ip != UNKNOWN:  # semconv: the client behind any proxies (trusted_proxies applied)
            attributes["client.address"] = ctx.client_ip
        span = self.tracer.start_span(
            name, context=parent_context(scope), kind=SpanKind.SERVER, attributes=attributes
        )
        error: BaseException | None = None
        token = otel_context.attach(trace.set_span_in_context(span))  # cheaper than trace.use_span
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            otel_context.detach(token)
            annotate_server_span(span, ctx)
            status = ctx.status
            if status is None and error is not None and not isinstance(error, CancelledError):
                status = 500  # nothing was sent: the server answers 500
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if error is not None and not isinstance(error, CancelledError):
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            elif status is not None and status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            error = None  # the traceback holds this frame: keeping `error` would be a cycle

    async def _annotate_outer(
        self, outer: Span, ctx: GuardContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # FastAPI ends its span while the last body message is sent: annotate at response start
        async def annotated_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                annotate_server_span(outer, ctx)
            await send(message)

        try:
            await self.app(scope, receive, annotated_send)
        finally:
            annotate_server_span(outer, ctx)  # no-op once the span has ended


def server_span_middleware(
    app: ASGIApp, route: RouteInfo[Any], message_spans: bool, tracer: Tracer, provider: TracerProvider | None
) -> ASGIApp:
    """The route's server span around `app`: `ServerSpan`, or with `message_spans` on, the
    opentelemetry-instrumentation-asgi middleware (its per-message spans) around it."""
    lean = ServerSpan(app, route.template, tracer, reuse_outer=provider is None or message_spans)
    if not message_spans:
        return lean
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware  # only routes that ask

    template = route.template
    attributes = {"http.route": template}
    names: dict[str, str] = {}

    def span_details(scope: Scope) -> tuple[str, dict[str, str]]:
        method = scope.get("method", "HTTP")
        name = names.get(method)
        if name is None:
            name = names[method] = f"{method} {template}"
        return name, attributes

    middleware: ASGIApp = OpenTelemetryMiddleware(
        lean, default_span_details=span_details, tracer_provider=provider
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


_SCALARS = (str, bool, int, float)


def annotate_server_span(span: Span, ctx: GuardContext) -> None:
    """What the guard learned, on the server span: request id, route, principal, the rejecting stage,
    and each stage's decision as `asgi_guard.<stage>.outcome` / `.reason` / `.<detail>` (scalars;
    other values as their str). Idempotent; a no-op on a span that has ended or is not recording."""
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
    for name, decision in ctx.decisions.items():
        prefix = "asgi_guard." + name
        attributes[prefix + ".outcome"] = decision.outcome
        if decision.reason is not None:
            attributes[prefix + ".reason"] = decision.reason
        for key, value in decision.detail.items():
            if value is not None:
                attributes[f"{prefix}.{key}"] = value if isinstance(value, _SCALARS) else str(value)
    span.set_attributes(attributes)
