"""Stage 7: a per-route circuit breaker around the handler, with retries only where they are safe.

Closed: calls run; `circuit_breaker_threshold` consecutive failures of the handler (an exception, a 5xx
response, the handler time-out) open the circuit. Only the handler's outcome counts: an inner stage's
rejection of the client's input (a 4xx Problem, such as a body the encryption stage cannot process) is
not a failure, nor is anything after the client disconnected mid-request (the handler's
`ClientDisconnect`), so one client cannot open the circuit for everyone by hanging up, and neither is an
exception from background work after a complete response. Open: 503 problem with Retry-After, the
handler is not called (the credits stage outside refunds). After `circuit_breaker_timeout` one trial
call runs (half-open): success closes, failure re-opens. With Valkey the state is shared by every
process.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.problems import HANDLER_TIMEOUT, Problem, backend_unavailable
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.circuit_breaker import Admission, make_breaker
from asgi_guard.stages.circuit_breaker.retry import Attempt, backoff_delay, is_retry_safe

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.circuit_breaker.config import CircuitBreakerConfig

log = logging.getLogger("asgi_guard.circuit_breaker")
_UNTRACKED = Admission(True, "unknown")  # admitted while the shared state was unreachable (fail open)


class CircuitBreakerMiddleware(Stage["CircuitBreakerConfig"]):
    name = "circuit_breaker"
    section = "circuit_breaker"

    def __init__(self, app: ASGIApp, route: RouteInfo[CircuitBreakerConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        policy = self.config
        lease = policy.half_open_lease or route.handler_timeout or policy.circuit_breaker_timeout
        self.label = route.label
        self.breaker = make_breaker(
            self.backend,
            self.label,
            policy.circuit_breaker_threshold,
            policy.circuit_breaker_timeout,
            lease,
            runtime.metrics,
        )
        self.fail_open = policy.fail_open
        self.max_retries = policy.max_retries
        self.backoff = policy.retry_backoff
        metrics = runtime.metrics
        self._faults = metrics.backend_faults.labels(self.label, self.name)

    @classmethod
    def enabled_for(cls, config: CircuitBreakerConfig) -> bool:
        return config.enabled

    @classmethod
    def needs_body(cls, config: CircuitBreakerConfig) -> bool:
        """Retries replay the request body, so it is buffered when the route retries."""
        return config.max_retries > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        retries = self.max_retries if self.max_retries and is_retry_safe(scope) else 0
        original = await ctx.body() if retries else b""  # read before a trial slot is taken
        admission = await self._acquire(ctx)
        if not admission.allowed:
            raise self._open(ctx, admission)
        ctx.decide(self.name, "allowed", state=admission.state, attempts=0)
        attempt = 0
        gone = False  # the client left before the response completed: no outcome is the handler's

        async def watched() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not out.complete:
                gone = True
            return message

        while True:
            attempt += 1
            out = Attempt(send, hold=attempt <= retries)
            error: BaseException | None = None
            failed: bool | None  # None: not the handler's outcome (a guard stage's rejection)
            try:
                await self.app(scope, watched, out)
            except asyncio.CancelledError:
                await asyncio.shield(self._release(admission, ctx))
                raise
            except Problem as problem:
                # Only the time-out is the handler's; any other Problem is an inner stage rejecting the
                # client's input (400, 413, 422...) or its own backend, never a handler failure.
                error, failed = problem, (True if problem.slug == HANDLER_TIMEOUT else None)
            except Exception as exc:  # noqa: BLE001 - any handler exception is a failure, re-raised below
                # ...unless the response was already complete: then it is background work's error.
                after_answer = out.complete and out.status is not None and out.status < 500
                error, failed = exc, not after_answer
            else:
                if out.status is None:
                    failed = True  # returned without answering
                elif out.status >= 500:
                    failed = True if ctx.rejected_by is None else None
                else:
                    failed = False
            if gone:  # e.g. Starlette's ClientDisconnect: the client's doing, whoever raised
                failed = None
            if failed is None:
                await self._release(admission, ctx)
            else:
                await self._record(admission, ctx, ok=not failed)
            ctx.decide(
                self.name,
                "allowed",
                "not_counted" if failed is None else ("failure" if failed else "success"),
                state=admission.state,
                attempts=attempt,
            )
            if failed and attempt <= retries and not out.sent:
                await asyncio.sleep(backoff_delay(self.backoff, attempt))
                again = await self._acquire(ctx)
                if again.allowed:
                    admission = again
                    receive = self._replay(ctx, scope, original)
                    continue
            if error is not None:
                try:
                    raise error
                finally:  # the traceback holds this frame: keeping `error` here would be a cycle
                    error = None
            await out.flush()
            return

    async def _acquire(self, ctx: GuardContext) -> Admission:
        try:
            return await self.breaker.acquire(ctx.request_id)
        except BackendUnavailable as exc:
            self._faults.inc()
            if self.fail_open:
                log.warning("circuit state for %s unreachable, failing open: %s", self.label, exc)
                return _UNTRACKED
            ctx.decide(self.name, "rejected", "backend_unavailable")
            raise backend_unavailable(self.name) from exc

    async def _record(self, admission: Admission, ctx: GuardContext, ok: bool) -> None:
        if admission is _UNTRACKED:
            return  # the breaker skips a success that resets nothing
        try:
            await self.breaker.record(admission, ctx.request_id, ok)
        except BackendUnavailable as exc:
            self._faults.inc()
            log.warning("could not record a call result for %s: %s", self.label, exc)

    async def _release(self, admission: Admission, ctx: GuardContext) -> None:
        if admission is _UNTRACKED:
            return
        try:
            await self.breaker.release(admission, ctx.request_id)
        except BackendUnavailable:
            self._faults.inc()

    def _open(self, ctx: GuardContext, admission: Admission) -> Problem:
        ctx.decide(self.name, "rejected", "circuit_open", state=admission.state)
        retry_after = max(1, math.ceil(admission.retry_after))
        return Problem(
            503,
            "circuit-open",
            "Service Unavailable",
            f"{self.label} is failing; the circuit is {admission.state}, retry in {retry_after}s",
            headers=[(b"retry-after", str(retry_after).encode())],
            extra={"circuit": admission.state, "retry_after": retry_after},
        )

    @staticmethod
    def _replay(ctx: GuardContext, scope: Scope, original: bytes) -> Receive:
        """A fresh receive for a retry: the original body once, then the client's own messages."""
        if ctx.body_buffered and ctx._body is not original:
            ctx.replace_body(original, scope)
        pending = True

        async def receive() -> Message:
            nonlocal pending
            if pending:
                pending = False
                return {"type": "http.request", "body": original, "more_body": False}
            return await ctx.raw_receive()

        return receive
