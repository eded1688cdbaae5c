"""Stage 6: reserve the route's price before the handler, then commit or refund exactly once.

Reserve (one atomic call) -> handler -> settle once, when the response is complete (the final
`http.response.body` was handed to the server): commit on a 2xx/3xx status, refund on a 4xx/5xx (an
open circuit's 503 included). Refund, too, on an exception or the handler time-out (504) before that
point, and when the client disconnects before it (`http.disconnect` seen while the handler runs, or the
final send failing): the handler is then cancelled. A disconnect after completion, or a BackgroundTask
that fails or runs long after it, changes nothing: the charge is committed. The reservation id is the
request id; a
reservation left unsettled (the process died) is refunded by the next operation on that balance.

A route with `charge_cache_hits` runs this stage before the cache (`runs_before`), so a response the
cache answers is reserved and committed like any other; by default a hit is free (the cache answers
before this stage runs).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.cost import CostSource
from asgi_guard.core.disconnect import ClientWatch, has_body
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.exemptions import may_exempt
from asgi_guard.core.problems import Problem, backend_unavailable
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.credits import ReserveStatus, Settlement, credit_store
from asgi_guard.stages.credits.store import Anonymous, User

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.credits.config import CreditsConfig

log = logging.getLogger("asgi_guard.credits")
HEADER = b"x-credits-remaining"
DEFAULT_RESERVATION_TTL = 600.0


def payer(ctx: GuardContext) -> User:
    """Whose balance a request spends: the verified JWT subject, else `Anonymous(client address)`
    (never the subject that reads like that address: see `store.account`)."""
    principal = ctx.principal
    return principal.subject if principal is not None else Anonymous(ctx.client_ip)


def reservation_ttl(handler_timeout: float | None) -> float:
    """How long a reservation may stay unsettled before anyone may refund it: well past the
    handler's time-out (seconds), so only reservations of dead processes expire."""
    if handler_timeout is None:
        return DEFAULT_RESERVATION_TTL
    return max(60.0, 2 * handler_timeout + 5)


class CreditsMiddleware(Stage["CreditsConfig"]):
    name = "credits"
    section = "credits"

    def __init__(self, app: ASGIApp, route: RouteInfo[CreditsConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        config = self.config
        self.store = credit_store(self.backend)
        self.amount: int = config.required_credits
        # a price read from the request (the reservation: the most it can be charged), else the fixed one
        self.price = (
            None if config.price is None else CostSource(config.price, runtime.settings.trusted_proxies)
        )
        self.credit_type: str = config.credit_type
        self.ttl = reservation_ttl(route.handler_timeout)
        metrics = runtime.metrics
        label = route.label
        self._reserved = metrics.credits.labels(label, self.credit_type, "reserved")
        self._committed = metrics.credits.labels(label, self.credit_type, "committed")
        self._refunded = metrics.credits.labels(label, self.credit_type, "refunded")
        self._insufficient = metrics.credits.labels(label, self.credit_type, "insufficient")
        self._faults = metrics.backend_faults.labels(label, self.name)
        self._exempt = metrics.credits.labels(label, self.credit_type, "exempt")
        self._exemptible = self.name in route.exempt or may_exempt(self.name, runtime.settings.exempt)

    @classmethod
    def enabled_for(cls, config: CreditsConfig) -> bool:
        return config.required_credits > 0 or config.price is not None

    @classmethod
    def runs_before(cls, config: CreditsConfig) -> str | None:
        """A route that charges cache hits decides credits before the cache can answer."""
        return "cache" if config.charge_cache_hits else None

    @classmethod
    def needs_body(cls, config: CreditsConfig) -> bool:
        return config.price is not None and config.price.source == "body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        if self._exemptible and await ctx.exempt_from(self.name, scope):
            self._exempt.inc()
            ctx.decide(self.name, "allowed", "exempt", credit_type=self.credit_type)
            await self.app(scope, receive, send)
            return
        user, rid = payer(ctx), ctx.request_id
        amount = self.amount if self.price is None else await self.price(ctx, scope)
        try:
            reservation = await self.store.reserve(user, amount, rid, self.ttl, self.credit_type)
        except BackendUnavailable as exc:
            self._faults.inc()
            log.warning("credits backend unavailable: %s", exc)
            ctx.decide(self.name, "rejected", "backend_unavailable")
            raise backend_unavailable(self.name) from exc
        header = (HEADER, str(reservation.balance).encode())
        ctx.response_headers.append(header)
        decision: dict[str, str | int] = {
            "credit_type": self.credit_type,
            "required": amount,
            "balance": reservation.balance,
        }
        if reservation.status is not ReserveStatus.RESERVED:
            raise self._reject(ctx, reservation.status, reservation.balance, decision, amount)
        ctx.decide(self.name, "allowed", "reserved", **decision)
        self._reserved.inc()
        await _Charge(self, ctx, header, decision).run(scope, receive, send)

    def _reject(
        self,
        ctx: GuardContext,
        status: ReserveStatus,
        balance: int,
        decision: dict[str, str | int],
        amount: int,
    ) -> Problem:
        if status is ReserveStatus.DUPLICATE:
            ctx.decide(self.name, "rejected", "duplicate_request_id", **decision)
            return Problem(
                409,
                "duplicate-request-id",
                "Conflict",
                "a request with this X-Request-ID is already being charged",
            )
        self._insufficient.inc()
        ctx.decide(self.name, "rejected", "insufficient_credits", **decision)
        return Problem(
            402,
            "insufficient-credits",
            "Payment Required",
            f"this request costs {amount} {self.credit_type} credits; the balance is {balance}",
            extra={"balance": balance, "required": amount, "credit_type": self.credit_type},
        )


class _Charge:
    """One request's reservation: watches the response and settles it exactly once."""

    __slots__ = ("ctx", "decision", "header", "settled", "stage", "status")

    def __init__(
        self,
        stage: CreditsMiddleware,
        ctx: GuardContext,
        header: tuple[bytes, bytes],
        decision: dict[str, str | int],
    ) -> None:
        self.stage = stage
        self.ctx = ctx
        self.header = header
        self.decision = decision
        self.status: int | None = None
        self.settled = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; settle when its response is complete (commit below 400, refund otherwise), or
        refund when it fails, times out or the client leaves first (the handler is then cancelled:
        nobody will read its answer). Work after the response (a BackgroundTask) changes nothing."""
        stage = self.stage
        watch = ClientWatch(receive, has_body=has_body(scope))
        task = asyncio.current_task()
        cancelled = False

        def client_gone() -> None:
            nonlocal cancelled
            if task is not None and not self.settled:
                cancelled = True
                task.cancel()

        watch.on_gone = client_gone

        async def watch_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                self.status = message["status"]
                if self.status >= 400:
                    await self.settle(commit=False)  # so the header shows the refunded balance
            elif kind == "http.response.body" and not message.get("more_body", False):
                await asyncio.sleep(0)  # let the watch see a disconnect that is already pending
                watch.finish()  # from here the send's own outcome decides
                try:
                    await send(message)
                except OSError:  # ASGI 2.4: the connection is closed
                    watch.finish(failed=True)
                    await self.settle(commit=False)
                    raise
                if not self.settled:
                    ok = self.status is not None and self.status < 400 and not watch.gone
                    await self.settle(commit=ok)
                return
            await send(message)

        try:
            await stage.app(scope, watch.receive, watch_send)
        except asyncio.CancelledError:
            if not self.settled:
                await asyncio.shield(self.settle(commit=False))
            if cancelled and task is not None and task.uncancel() == 0:
                return  # our own cancellation: the client is gone, nothing to answer
            raise
        except BaseException:
            if not self.settled:
                await asyncio.shield(self.settle(commit=False))
            raise
        finally:
            watch.close()
        if not self.settled:  # the app returned without completing a response
            await self.settle(commit=False)

    async def settle(self, *, commit: bool) -> None:
        """Commit or refund once; a backend failure leaves the reservation to expire (and be refunded)."""
        if self.settled:
            return
        self.settled = True
        stage, ctx = self.stage, self.ctx
        try:
            if commit:
                keep = self._usage()
                result: Settlement = await stage.store.commit(
                    payer(ctx), ctx.request_id, stage.credit_type, keep
                )
            else:
                result = await stage.store.refund(payer(ctx), ctx.request_id, stage.credit_type)
        except BackendUnavailable as exc:
            stage._faults.inc()
            self._decide("unsettled")
            log.warning(
                "credits %s of request %s failed (%s); the reservation is refunded when it expires",
                "commit" if commit else "refund",
                ctx.request_id,
                exc,
            )
            return
        if not result.done:
            self._decide("expired", result.balance)
            log.warning("reservation of request %s expired before it was settled; refunded", ctx.request_id)
        elif commit:
            self._decide("committed", result.balance)
            stage._committed.inc()
        else:
            self._decide("refunded", result.balance)
            stage._refunded.inc()
            self._show_balance(result.balance)

    def _decide(self, settled: str, balance: int | None = None) -> None:
        """The stage's decision, now that the reservation is settled (`settled` says how)."""
        if balance is not None:
            self.decision["balance"] = balance
        self.ctx.decide(self.stage.name, "allowed", settled, **self.decision)

    def _usage(self) -> int | None:
        """What the handler reported using (`ctx.report_usage`), capped at the reservation; None
        when it reported nothing (the whole reservation is kept)."""
        usage = self.ctx.usage
        if usage is None:
            return None
        reserved = int(self.decision["required"])
        self.decision["used"] = usage
        if usage > reserved:
            self.decision["over_reservation"] = usage - reserved
            log.warning(
                "request %s reported using %d credits but reserved %d; charged %d",
                self.ctx.request_id,
                usage,
                reserved,
                reserved,
            )
            return reserved
        return usage

    def _show_balance(self, balance: int) -> None:
        """Swap the remaining-balance header (stage 0 adds it when the response starts)."""
        headers = self.ctx.response_headers
        for index, item in enumerate(headers):
            if item is self.header:
                self.header = headers[index] = (HEADER, str(balance).encode())
                return
