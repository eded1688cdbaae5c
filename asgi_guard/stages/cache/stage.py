"""Stage 5: response cache.

A hit answers at once (the inner stages, credits included, never run) with `X-Cache: HIT`, `Age`
and an RFC 9211 `Cache-Status`. A miss runs the handler once per key and process (single flight:
concurrent misses wait, bounded, for the first one's response), and stores a 200 that does not say
`no-store` (nor `private`, when the cache is shared). A store that is down means serving uncached.

On Valkey, when the route also rate-limits, the rate-limit stage looks the entry up in the round
trip of its own decision (see `asgi_guard.stages.cache.prefetch`); this stage then answers a hit from that
lookup, and on a miss runs its normal (locking) lookup as it would have anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.http import CachedResponse, directives, header_values
from asgi_guard.core.problems import backend_unavailable
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.cache import prefetch
from asgi_guard.stages.cache.keys import CacheKeyBuilder
from asgi_guard.stages.cache.singleflight import SingleFlight
from asgi_guard.stages.cache.stores import Filling, Hit, ValkeyCacheStore, build_store

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.cache.config import CacheConfig

log = logging.getLogger("asgi_guard.cache")

_CACHE_CONTROL = b"cache-control"
_SET_COOKIE = b"set-cookie"
_VARY = b"vary"
_X_CACHE = b"x-cache"
_AGE = b"age"
_CACHE_STATUS = b"cache-status"
_MISS = (_X_CACHE, b"MISS")
_NOT_STORABLE_ALWAYS = frozenset({"no-store", "no-cache"})
_NOT_STORABLE_SHARED = frozenset({"no-store", "no-cache", "private"})


class CacheMiddleware(Stage["CacheConfig"]):
    name = "cache"
    section = "cache"

    def __init__(self, app: ASGIApp, route: RouteInfo[CacheConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        cache = self.config
        self._keys = CacheKeyBuilder(route)
        policy = cache.policy
        self._store = build_store(
            self.backend,
            route.label,
            cache.algo.value,
            policy.capacity,
            cache.ttl,
            cache.single_flight_timeout,
        )
        self._flights = SingleFlight()
        self._fail_open = cache.fail_open
        self._wait = cache.single_flight_timeout
        self._max_size = cache.max_entry_size
        self._refuse = _NOT_STORABLE_SHARED if cache.shared else _NOT_STORABLE_ALWAYS
        metrics = runtime.metrics
        label = route.label
        self._hits = metrics.cache.labels(label, "hit")
        self._misses = metrics.cache.labels(label, "miss")
        self._bypasses = metrics.cache.labels(label, "bypass")
        self._errors = metrics.cache.labels(label, "error")
        self._faults = metrics.backend_faults.labels(label, "cache")
        # Valkey + rate limit: offer the lookup to the rate-limit stage (built after this one)
        self._prefetched = False
        if isinstance(self._store, ValkeyCacheStore) and "rate_limit" in route.stages:
            prefetch.prefetchers(runtime)[route] = prefetch.CachePrefetch(self._keys, self._store)
            self._prefetched = True

    @classmethod
    def enabled_for(cls, config: CacheConfig) -> bool:
        return config.enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        pre: prefetch.Prefetched | None = scope.pop(prefetch.SCOPE_KEY, None) if self._prefetched else None
        if pre is None:
            refresh, no_store = prefetch.request_directives(scope["headers"])
            key = await self._keys.key(ctx, scope)
        else:
            key, refresh, no_store = pre.key, pre.refresh, pre.no_store
            found = pre.found
            if isinstance(found, tuple):  # a hit (else None: a miss, or NOT_FETCHED)
                await self._answer_hit(ctx, found, send, True)
                return
        if refresh:
            ctx.decide(self.name, "allowed", "refresh", hit=False, result="refresh")
            self._bypasses.inc()
            await self._fill(key, ctx, scope, receive, send, b"asgi-guard; fwd=request", store=not no_store)
            return

        flight = self._flights.join(key)
        if flight is not None:
            shared = await self._flights.wait(flight, self._wait)
            if shared is not None:
                ctx.decide(self.name, "answered", "coalesced", hit=True, result="coalesced", age=0)
                self._hits.inc()
                ctx.response_headers.extend(
                    ((_X_CACHE, b"HIT"), (_AGE, b"0"), (_CACHE_STATUS, b"asgi-guard; hit"))
                )
                await shared.send(send, [])
                return
            ctx.decide(self.name, "allowed", "miss", hit=False, result="miss")
            self._misses.inc()
            await self._fill(key, ctx, scope, receive, send, b"asgi-guard; fwd=miss", store=not no_store)
            return

        # This request leads the flight for `key`: look up, else run the handler and share the result.
        result: CachedResponse | None = None
        try:
            try:
                found, locked = await self._lookup(key)
            except BackendUnavailable as exc:
                self._store_fault(ctx, exc)
                await self._run_uncached(ctx, scope, receive, send)
                return
            if found is not None:
                result = found[0]
                await self._answer_hit(ctx, found, send, False)
                return
            ctx.decide(self.name, "allowed", "miss", hit=False, result="miss")
            self._misses.inc()
            result = await self._fill(
                key, ctx, scope, receive, send, b"asgi-guard; fwd=miss", store=not no_store, locked=locked
            )
        finally:
            self._flights.land(key, result)

    async def _answer_hit(self, ctx: GuardContext, found: Hit, send: Send, prefetched: bool) -> None:
        response, age, left = found
        decision: dict[str, Any] = {"hit": True, "result": "hit", "age": int(age)}
        if prefetched:
            decision["prefetched"] = True
        ctx.decide(self.name, "answered", "hit", **decision)
        self._hits.inc()
        status = f"asgi-guard; hit; ttl={int(left)}".encode()
        # via the context, like every stage header: an outer stage that records the
        # response (idempotency) keeps the entry, not this answer's cache headers
        ctx.response_headers.extend(
            ((_X_CACHE, b"HIT"), (_AGE, str(int(age)).encode()), (_CACHE_STATUS, status))
        )
        await response.send(send, [])

    async def _lookup(self, key: str) -> tuple[Hit | None, bool]:
        """(entry or None, whether this caller holds the fill lock). While another process fills
        the key, poll for its entry with a growing pause, up to the single-flight bound."""
        found = await self._store.get(key, True)
        if not isinstance(found, Filling):
            return found, found is None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        pause = 0.005
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
            found = await self._store.get(key, True)
            if not isinstance(found, Filling):
                return found, found is None
        return None, False

    async def _fill(
        self,
        key: str,
        ctx: GuardContext,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: bytes,
        *,
        store: bool,
        locked: bool = False,
    ) -> CachedResponse | None:
        """Run the handler, stream its response, and store it when it may be; return a response
        followers may share (None when it was not storable)."""
        ctx.response_headers.append(_MISS)
        ctx.response_headers.append((_CACHE_STATUS, status))
        captured = _Capture(send, self._refuse, self._max_size)
        stored = False
        try:
            await self.app(scope, receive, captured)
            response = captured.response()
            if response is None or not store:
                return response
            try:
                await self._store.set(key, response)
            except BackendUnavailable as exc:
                self._faults.inc()
                self._errors.inc()
                log.warning("cache store unavailable, response not stored: %s", exc)
                return response
            stored = True
            prior = ctx.decisions[self.name]
            ctx.decide(self.name, prior.outcome, prior.reason, **prior.detail, stored=True)
            return response
        finally:
            if locked and not stored:
                with contextlib.suppress(BackendUnavailable):
                    await self._store.unlock(key)

    def _store_fault(self, ctx: GuardContext, exc: BackendUnavailable) -> None:
        self._faults.inc()
        self._errors.inc()
        if not self._fail_open:
            ctx.decide(self.name, "rejected", "backend_unavailable", hit=False, result="error")
            raise backend_unavailable(self.name) from exc
        log.warning("cache store unavailable, serving uncached: %s", exc)
        ctx.decide(self.name, "allowed", "fail_open", hit=False, result="error")

    async def _run_uncached(self, ctx: GuardContext, scope: Scope, receive: Receive, send: Send) -> None:
        ctx.response_headers.append(_MISS)
        ctx.response_headers.append((_CACHE_STATUS, b"asgi-guard; fwd=miss; detail=store-unavailable"))
        await self.app(scope, receive, send)


class _Capture:
    """Forwards the response and keeps a copy while it stays storable."""

    __slots__ = ("_body", "_complete", "_headers", "_max", "_refuse", "_send", "_size", "_status", "ok")

    def __init__(self, send: Send, refuse: frozenset[str], max_size: int) -> None:
        self._send = send
        self._refuse = refuse
        self._max = max_size
        self._body: list[bytes] = []
        self._size = 0
        self._status = 0
        self._headers: tuple[tuple[bytes, bytes], ...] = ()
        self._complete = False
        self.ok = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = tuple(message.get("headers", ()))
            self._status = message["status"]
            self._headers = headers
            self.ok = self._status == 200 and _storable(headers, self._refuse)
        elif kind == "http.response.body":
            if self.ok:
                chunk = message.get("body", b"")
                self._size += len(chunk)
                if self._size > self._max:
                    self.ok, self._body = False, []
                else:
                    self._body.append(chunk)
                if not message.get("more_body", False):
                    self._complete = True
        else:
            self.ok = False
        await self._send(message)

    def response(self) -> CachedResponse | None:
        if not (self.ok and self._complete):
            return None
        return CachedResponse(self._status, self._headers, b"".join(self._body))


def _storable(headers: tuple[tuple[bytes, bytes], ...], refuse: frozenset[str]) -> bool:
    control = header_values(headers, _CACHE_CONTROL)
    if control is not None and not refuse.isdisjoint(directives(control)):
        return False
    vary = header_values(headers, _VARY)
    if vary is not None and b"*" in vary:
        return False
    # A shared entry must never hand one user's cookie to another.
    return "private" not in refuse or header_values(headers, _SET_COOKIE) is None
