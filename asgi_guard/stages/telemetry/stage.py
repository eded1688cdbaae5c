"""Stage 1: server span, request metrics, redacted access log (outermost, so rejections count).

It also answers a raised `Problem` here (through `core.problems.answer_problem`, the one place that
does), inside the server span, so the span, the metrics and the log all see the rejection's real
status rather than an exception. What each stage decided comes from `ctx.decisions`.
"""

from __future__ import annotations

import logging
from asyncio import CancelledError
from collections.abc import Hashable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY
from asgi_guard.core.logging import JsonMessage, access_log
from asgi_guard.core.problems import Problem, answer_problem
from asgi_guard.core.redaction import attach_redaction, current_scope
from asgi_guard.core.stage import RouteInfo, Stage, section_key
from asgi_guard.core.tracing import STAGES_KEY, current_trace_id, emit_stage_spans, server_span_middleware

if TYPE_CHECKING:
    from prometheus_client import Counter

    from asgi_guard.core.context import GuardContext
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.telemetry.config import TelemetryConfig

_INFO = logging.INFO


class TelemetryMiddleware(Stage["TelemetryConfig"]):
    """Counts, times, traces and logs every request of a registered route, rejections included."""

    name = "telemetry"
    section = "telemetry"

    def __init__(self, app: ASGIApp, route: RouteInfo[TelemetryConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        metrics = runtime.metrics
        self.label = route.label
        self._requests = metrics.requests
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._rejections = metrics.rejections
        self._latency = metrics.request_latency.labels(self.label)
        threshold = self.config.metrics.threshold_ms
        self._slow_after = threshold / 1000.0 if threshold is not None else None
        self._tracing = runtime.tracing
        self._active = runtime.tracing.active  # a bound check, one call per request
        tracing = self.config.tracing
        inner = self._observe_staged if tracing.stage_spans else self._observe
        self._traced = server_span_middleware(
            inner, route, tracing.message_spans, self._tracing.tracer, self._tracing.provider
        )
        runtime.redactor.add_fields(self.config.redact_fields)
        runtime.redactor.add_headers(runtime.settings.redact_headers)
        # once per app, not per route (it walks every logger): loggers made later get it at start-up
        runtime.service("telemetry.redaction", lambda: _attach_at_startup(runtime))

    @classmethod
    def validation_key(cls, config: TelemetryConfig) -> Hashable:
        """What building can fail on or register app-wide (metrics, redacted fields, the span
        form); the route's span names and labels cannot."""
        tracing = config.tracing
        return (section_key(config.metrics), config.redact_fields, tracing.message_spans, tracing.stage_spans)

    @classmethod
    def enabled_for(cls, config: TelemetryConfig) -> bool:
        return True

    @classmethod
    def enabled_in(cls, config: TelemetryConfig, runtime: GuardRuntime) -> bool:
        """Off only when there is nowhere to report to: metrics off (no `metrics_path`, no
        `metrics_collect`), the operator console off, no
        OpenTelemetry SDK installed, the access logger silent when the stack is built, and no
        slow-request threshold on the route."""
        return bool(
            runtime.settings.metrics_on
            or runtime.tally is not None
            or config.metrics.threshold_ms is not None
            or runtime.tracing.active()
            or access_log.isEnabledFor(_INFO)
        )

    @classmethod
    def needs_body(cls, config: TelemetryConfig) -> bool:
        # The values of a route's secret body fields must be known to scrub them from any log line
        # (an exception message, say), so such routes keep their body buffered.
        return bool(config.redact_fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._active():
            await self._traced(scope, receive, send)
        else:
            await self._observe(scope, receive, send)

    async def _observe_staged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`tracing.stage_spans` on: runs inside the server span; the stage spans are written after."""
        ctx: GuardContext = scope[SCOPE_KEY]
        records: dict[str, list[Any]] = {}
        scope[STAGES_KEY] = records
        try:
            await self._observe(scope, receive, send)
        finally:
            emit_stage_spans(ctx, records, self._tracing.tracer)

    async def _observe(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        started = perf_counter()
        token = current_scope.set(scope)
        reason: str | None = None
        error: BaseException | None = None
        try:
            try:
                await self.app(scope, receive, send)
            except Problem as problem:
                if ctx.status is not None:
                    raise
                reason = problem.slug
                await answer_problem(ctx, send, problem)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                self._record(ctx, perf_counter() - started, reason, error)
            finally:
                current_scope.reset(token)
                error = None  # the traceback holds this frame: keeping `error` would be a cycle

    def _record(
        self, ctx: GuardContext, elapsed: float, reason: str | None, error: BaseException | None
    ) -> None:
        if ctx.status is not None:
            status = ctx.status
        elif error is None:
            status = 200
        else:  # nothing was sent: Starlette answers 500, or the client went away (nginx's 499)
            status = 499 if isinstance(error, CancelledError) else 500
        key = (ctx.method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self._requests.labels(self.label, ctx.method, str(status))
        child.inc()
        self._latency.observe(elapsed)
        tally = self.runtime.tally  # the operator console's counts (None when it is off); read per
        if tally is not None:  # request, so a console built after the pipelines still counts
            tally.record(ctx, status)
        rejected = ctx.rejected_by is not None and status >= 400
        if rejected:
            stage = ctx.rejected_by or ""
            said = ctx.decisions.get(stage)
            if said is not None and said.reason is not None:
                reason = said.reason
            self._rejections.labels(self.label, stage, reason or str(status)).inc()
        slow = self._slow_after is not None and elapsed > self._slow_after
        level = logging.ERROR if error is not None else _INFO
        if not (slow or access_log.isEnabledFor(level)):
            return
        fields = self._fields(ctx, status, elapsed, rejected, error)
        if access_log.isEnabledFor(level):
            access_log.log(level, JsonMessage(fields))
        if slow:
            access_log.warning(
                JsonMessage(
                    {**fields, "event": "slow_request", "threshold_ms": self.config.metrics.threshold_ms}
                )
            )

    def _fields(
        self, ctx: GuardContext, status: int, elapsed: float, rejected: bool, error: BaseException | None
    ) -> dict[str, Any]:
        if error is not None:
            decision = "error"
        elif rejected:
            decision = "rejected"
        elif status >= 500:
            decision = "failed"
        else:
            decision = "allowed"
        fields: dict[str, Any] = {
            "event": "access",
            "request_id": ctx.request_id,
            "trace_id": current_trace_id(),
            "route": ctx.route.template,
            "route_label": self.label,
            "method": ctx.method,
            "path": ctx.path,
            "status": status,
            "latency_ms": round(elapsed * 1000.0, 3),
            "client_ip": ctx.client_ip,
            "principal": ctx.principal.subject if ctx.principal is not None else None,
            "decision": decision,
        }
        if ctx.rejected_by:
            fields["rejected_by"] = ctx.rejected_by
        if ctx.decisions:
            fields["decisions"] = {name: decision.fields() for name, decision in ctx.decisions.items()}
        if error is not None:
            fields["error"] = f"{type(error).__name__}: {error}"
        return fields


def _attach_at_startup(runtime: GuardRuntime) -> bool:
    """The filter on every asgi_guard logger now, and again at start-up for loggers that modules
    create lazily (called once per app, not per route: it walks every logger)."""
    attach_redaction()

    async def attach() -> None:
        attach_redaction()

    try:
        runtime.on_startup(attach)
    except RuntimeError:  # already started: the build-time attachment is all there is
        return False
    return True
