"""Stage 5: response cache, a shared cache in RFC 9111's sense unless the key carries the principal.

Per request (see docs/cache-rules.md for the table):
- `keys.CacheKeyBuilder.plan` classifies it: LOOKUP, REFRESH (request no-cache / max-age=0), BYPASS
  (a Host outside `allowed_hosts`), or PASS (a method the route does not cache; unsafe ones
  invalidate the path's entries after a successful response, RFC 9111 §4.4). Credentials the
  guard did not verify (Authorization, a credential cookie) only ever see entries whose response
  said `public` / `s-maxage` / `must-revalidate` (§3.5) and never join or lead a fill.
- A hit answers at once (inner stages, credits included, never run) with `X-Cache: HIT`, `Age`
  and an RFC 9211 `Cache-Status`, or 304 for a matching `If-None-Match` / `If-Modified-Since`.
  A stale entry is served while one background revalidation runs (stale-while-revalidate) or when
  the handler fails (stale-if-error), as far as the response allowed (RFC 5861). The revalidation
  is the guard's own request: its own request id, through the stages inside this one with a
  `GuardContext.revalidation` context (never charged: exempt from credits), as a GET without
  conditional headers; a failure leaves the stale entry and logs.
- A miss runs the handler once per key (single flight in the process; a fill lock in Valkey
  across processes) and stores what `control.storability` allows, as a variant of the response's
  Vary (§4.1). A response that is not storable (decided at its start) releases the waiters at
  once, so a stream (SSE) never holds them. On the embedded backend the entry belongs to the
  client that filled it (`ctx.principal_key`), so one client's flood evicts its own entries (`memory`).
On Valkey, when an outer stage carries it, the lookup rides that stage's round trip (`prefetch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.http import CachedResponse
from asgi_guard.core.problems import Problem, backend_unavailable
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.cache import control, prefetch
from asgi_guard.stages.cache.keys import BYPASS, PASS, REFRESH, CacheKeyBuilder, Plan, unsafe
from asgi_guard.stages.cache.purge import CachePurger, declare_namespace, register_namespace, request_tags
from asgi_guard.stages.cache.singleflight import Flight, SingleFlight
from asgi_guard.stages.cache.stores import Filling, Hit, MemoryCacheStore, ValkeyCacheStore, build_store

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.cache.config import CacheConfig
    from asgi_guard.stages.cache.stores import CacheStore
    from asgi_guard.state import Backend

log = logging.getLogger("asgi_guard.cache")

_X_CACHE = b"x-cache"
_AGE = b"age"
_CACHE_STATUS = b"cache-status"
_MISS = (_X_CACHE, b"MISS")
_HIT = (_X_CACHE, b"HIT")
_ERRORS = frozenset({500, 502, 503, 504})
_LOCATIONS = (b"location", b"content-location")
# Never part of a stored entry: per-request or per-hop fields, and what the stage adds itself.
_DROP_ALWAYS = frozenset({b"age", b"x-cache", b"cache-status", b"x-request-id", b"date", b"connection"})
_TASKS: set[asyncio.Task[None]] = set()  # background revalidations (kept referenced until done)
_REQUEST_ID = b"x-request-id"
# Not sent on a revalidation: it asks for the whole current response, not for the client's
# conditional or partial one (a 304 or 206 could not replace the entry).
_REVALIDATION_DROPS = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range", b"range"}
)


class CacheMiddleware(Stage["CacheConfig"]):
    name = "cache"
    section = "cache"
    background_work = True  # stale-while-revalidate runs the inner stages on its own (uncharged)

    def __init__(self, app: ASGIApp, route: RouteInfo[CacheConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        cache = self.config
        self._keys = CacheKeyBuilder(route, runtime)
        self._ttl = float(cache.ttl)
        # per tier (cache.tiers): a fill's lifetime by the caller's tier; shared entries the lowest
        self._tier_ttls = {tier: float(seconds) for tier, seconds in cache.tier_ttls.items()}
        self._shared_ttl = float(cache.shared_ttl) if self._tier_ttls else self._ttl
        self._stale_cap = float(min(cache.max_stale, cache.ttl))
        self._store = self._namespace(cache, route.label, self.backend)
        # credits run inside the cache (unless hits are charged, when they run before it)
        self._credits_inside = "credits" in route.stages
        # the embedded store bounds entries per owner (the client whose request filled them)
        self._owned = self._store if isinstance(self._store, MemoryCacheStore) else None
        # the embedded store splits a label by setting: routes sharing a label may hold theirs apart
        register_namespace(runtime, route.label, self._store, apart=self._owned is not None)
        self._flights = SingleFlight()
        self._refreshing: set[str] = set()
        self._fail_open = cache.fail_open
        self._wait = cache.single_flight_timeout
        self._max_size = cache.max_entry_size
        self._allow = frozenset(cache.store_despite)
        self._streams = cache.cache_streams
        self._etag = cache.etag
        self._tag_header = cache.tag_header.lower().encode("latin-1")
        self._fields = control.RESPONSE_FIELDS | {self._tag_header}  # what a response is read for
        self._drop = _DROP_ALWAYS | {self._tag_header}  # never stored
        self._max_variants = cache.max_variants
        metrics = runtime.metrics
        label = route.label
        self._hits = metrics.cache.labels(label, "hit")
        self._misses = metrics.cache.labels(label, "miss")
        self._bypasses = metrics.cache.labels(label, "bypass")
        self._errors = metrics.cache.labels(label, "error")
        self._revalidated = metrics.cache.labels(label, "revalidated")
        self._unrevalidated = metrics.cache.labels(label, "revalidation_failed")
        self._faults = metrics.backend_faults.labels(label, "cache")
        # Valkey: offer the lookup to an outer stage's round trip (the rate limiter carries it)
        self._rides = False
        riders = getattr(self.backend, "riders", None)  # Valkey backends carry riders
        if riders is not None and isinstance(self._store, ValkeyCacheStore):
            with contextlib.suppress(ValueError):
                riders.register(route, prefetch.CacheRider(self._keys, self._store))
                self._rides = True

    @staticmethod
    def _namespace(cache: CacheConfig, label: str, backend: Backend) -> CacheStore:
        """The route's store: its label is the namespace; entries live up to the longest tier TTL
        plus the stale-while-revalidate allowance."""
        ttl = float(cache.ttl)
        longest = max((ttl, *(float(seconds) for seconds in cache.tier_ttls.values())))
        return build_store(
            backend,
            label,
            cache.algo.value,
            cache.policy.capacity,
            longest + float(min(cache.max_stale, cache.ttl)),
            cache.single_flight_timeout,
            max_per_owner=cache.max_entries_per_owner,
        )

    @classmethod
    def declare(cls, route: RouteInfo[CacheConfig], runtime: GuardRuntime) -> None:
        """A route whose chain waits for its first request owns its namespace from start-up, so a
        purge (by route, path, resource or tag) reaches what other processes cached for it. The
        store is made when a purge first needs it; until then the route holds a partial of objects
        the registry keeps anyway (its section, its label, the shared backend)."""
        make = partial(cls._namespace, route.config, route.label, runtime.backend_for(route.pooling))
        declare_namespace(runtime, route.label, make)

    @classmethod
    def enabled_for(cls, config: CacheConfig) -> bool:
        return config.enabled

    # -- the request ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        pre: prefetch.Prefetched | None = scope.pop(prefetch.SCOPE_KEY, None) if self._rides else None
        plan = pre.plan if pre is not None else await self._keys.plan(ctx, scope)
        try:
            await self._serve(plan, pre, ctx, scope, receive, send)
        finally:
            prior = ctx.decisions.get(self.name)
            if prior is not None and "key" not in prior.detail and plan.key:
                self._note(ctx, key=plan.key)

    async def _serve(
        self,
        plan: Plan,
        pre: prefetch.Prefetched | None,
        ctx: GuardContext,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        mode = plan.mode
        if mode == PASS:
            if unsafe(ctx.method):
                await self._invalidating(ctx, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if mode == BYPASS:
            self._bypass(ctx, f"bypass; detail={plan.reason}")
            await self.app(scope, receive, send)
            return
        if mode == REFRESH:
            ctx.decide(self.name, "allowed", "refresh", hit=False, result="refresh")
            self._bypasses.inc()
            await self._fill(plan, ctx, scope, receive, send, b"asgi-guard; fwd=request")
            return
        if plan.credentialed:
            await self._credentialed(plan, pre, ctx, scope, receive, send)
            return
        if plan.head:
            await self._head(plan, pre, ctx, scope, receive, send)
            return
        if pre is not None and not isinstance(pre.found, prefetch._NotFetched):
            found = pre.found
            if isinstance(found, tuple):
                if await self._answer(plan, found, ctx, scope, receive, send, prefetched=True):
                    return
            elif found is None and pre.locked:  # a miss, and this request holds the fill lock
                await self._lead(plan, ctx, scope, receive, send, locked=True)
                return
        await self._follow_or_lead(plan, ctx, scope, receive, send)

    async def _follow_or_lead(
        self, plan: Plan, ctx: GuardContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        key = plan.key
        flight = self._flights.join(key)
        if flight is not None:
            shared = await self._flights.wait(flight, self._wait)
            if shared is not None and shared.serves(plan.prints):
                ctx.decide(self.name, "answered", "coalesced", hit=True, result="coalesced", age=0)
                self._hits.inc()
                ctx.response_headers.extend((_HIT, (_AGE, b"0"), (_CACHE_STATUS, b"asgi-guard; hit")))
                await self._send_entry(shared.response, ctx, scope, send)
                return
            ctx.decide(self.name, "allowed", "miss", hit=False, result="miss")
            self._misses.inc()
            await self._fill(plan, ctx, scope, receive, send, b"asgi-guard; fwd=miss")
            return
        # This request leads the flight for `key`: look up, else run the handler and share the result.
        own = self._flights.lead(key)
        result: Flight | None = None
        try:
            try:
                found, locked = await self._lookup(plan)
            except BackendUnavailable as exc:
                self._store_fault(ctx, exc)
                await self._run_uncached(ctx, scope, receive, send)
                return
            if found is not None and await self._answer(plan, found, ctx, scope, receive, send):
                result = _shared(found[0], plan)
                return
            ctx.decide(self.name, "allowed", "miss", hit=False, result="miss")
            self._misses.inc()
            result = await self._fill(
                plan, ctx, scope, receive, send, b"asgi-guard; fwd=miss", locked=locked, own=own, stale=found
            )
        finally:
            self._flights.land(key, result, own)

    async def _lead(
        self, plan: Plan, ctx: GuardContext, scope: Scope, receive: Receive, send: Send, locked: bool
    ) -> None:
        """Fill as the cross-process leader; lead the in-process flight too unless one runs (its
        leader is polling the store and will find this request's entry)."""
        ctx.decide(self.name, "allowed", "miss", hit=False, result="miss", prefetched=True)
        self._misses.inc()
        own = self._flights.lead(plan.key) if self._flights.join(plan.key) is None else None
        result: Flight | None = None
        try:
            result = await self._fill(
                plan, ctx, scope, receive, send, b"asgi-guard; fwd=miss", locked=locked, own=own
            )
        finally:
            if own is not None:
                self._flights.land(plan.key, result, own)

    async def _credentialed(
        self,
        plan: Plan,
        pre: prefetch.Prefetched | None,
        ctx: GuardContext,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Credentials the guard did not verify: only an entry whose response said it may answer
        such requests (public, s-maxage, must-revalidate) is used; else forward (fwd=bypass)."""
        found: Any = None
        if pre is not None and isinstance(pre.found, tuple):
            found = pre.found
        elif pre is None or isinstance(pre.found, prefetch._NotFetched):
            with contextlib.suppress(BackendUnavailable):
                found = await self._store.get(plan.key, False, plan.prints)
        if isinstance(found, tuple) and await self._answer(plan, found, ctx, scope, receive, send):
            return
        self._bypass(ctx, "bypass; detail=credentials")
        await self._fill(plan, ctx, scope, receive, send, None)

    async def _head(
        self,
        plan: Plan,
        pre: prefetch.Prefetched | None,
        ctx: GuardContext,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """HEAD is answered from GET's entry; a miss goes to the handler and stores nothing."""
        found: Any = None
        if pre is not None and not isinstance(pre.found, prefetch._NotFetched):
            found = pre.found
        else:
            try:
                found = await self._store.get(plan.key, False, plan.prints)
            except BackendUnavailable as exc:
                self._store_fault(ctx, exc)
                await self._run_uncached(ctx, scope, receive, send)
                return
        if isinstance(found, tuple) and await self._answer(plan, found, ctx, scope, receive, send):
            return
        ctx.decide(self.name, "allowed", "miss", hit=False, result="miss")
        self._misses.inc()
        ctx.response_headers.extend((_MISS, (_CACHE_STATUS, b"asgi-guard; fwd=miss")))
        await self.app(scope, receive, send)

    # -- hits -----------------------------------------------------------------------------------
    async def _answer(
        self,
        plan: Plan,
        found: Hit,
        ctx: GuardContext,
        scope: Scope,
        receive: Receive,
        send: Send,
        prefetched: bool = False,
    ) -> bool:
        """Answer from the entry if it may serve this request now (fresh, or stale within its
        stale-while-revalidate window); False when the handler must run instead."""
        response, stored_age, _ = found
        meta = response.meta
        if plan.credentialed and not meta.get("a"):
            return False
        age = stored_age + float(meta.get("i", 0))
        lifetime = float(meta.get("l", self._ttl))
        left = lifetime - age
        if plan.directives.max_age is not None and age > plan.directives.max_age:
            return False
        stale = left <= 0
        if stale and not (age < lifetime + float(meta.get("w", 0))):
            return False
        decision: dict[str, Any] = {"hit": True, "result": "stale" if stale else "hit", "age": int(age)}
        if prefetched:
            decision["prefetched"] = True
        ctx.decide(self.name, "answered", decision["result"], **decision)
        self._hits.inc()
        status = f"asgi-guard; hit; ttl={int(left) if left >= 0 else int(left) - 1}"
        if stale:
            status += "; detail=stale-while-revalidate"
            self._refresh_in_background(plan, ctx, scope)
        # via the context, like every stage header: an outer stage that records the
        # response (idempotency) keeps the entry, not this answer's cache headers
        ctx.response_headers.extend((_HIT, (_AGE, str(int(age)).encode()), (_CACHE_STATUS, status.encode())))
        await self._send_entry(response, ctx, scope, send)
        return True

    async def _send_entry(
        self, response: CachedResponse, ctx: GuardContext, scope: Scope, send: Send
    ) -> None:
        """The stored response, a 304 for a matching conditional request, or headers only (HEAD)."""
        headers = scope["headers"]
        if control.not_modified(headers, response.headers):
            kept = tuple((k, v) for k, v in response.headers if k.lower() in control.NOT_MODIFIED_KEEP)
            await CachedResponse(304, kept, b"").send(send, [], body=False)
            return
        await response.send(send, [], body=ctx.method != "HEAD")

    def _refresh_in_background(self, plan: Plan, ctx: GuardContext, scope: Scope) -> None:
        """One revalidation per key and process while a stale entry is served (RFC 5861 §3), as a
        request of the guard's own: its own request id and context (`GuardContext.revalidation`), a
        GET without the client's conditional headers, whose answer goes nowhere but the cache.
        Outer stages (rate limit, idempotency) ran once, for the triggering request. Uncharged,
        except an entry only one principal reads on a route whose credits run inside the cache:
        that principal pays for it like a miss (free, polling once per max-age inside the
        stale-while-revalidate window would buy endless handler runs for one charge)."""
        if plan.key in self._refreshing:
            return
        self._refreshing.add(plan.key)
        request_id = "revalidate-" + secrets.token_hex(8)
        charged = plan.per_principal and self._credits_inside
        revalidation = ctx.revalidation(request_id, method="GET", charged=charged)
        inner = dict(scope)
        inner["method"] = "GET"
        inner[SCOPE_KEY] = revalidation
        state = scope.get("state")
        inner["state"] = (
            {**state, "guard": revalidation} if isinstance(state, dict) else {"guard": revalidation}
        )
        inner["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in _REVALIDATION_DROPS and name != _REQUEST_ID
        ]
        inner["headers"].append((_REQUEST_ID, request_id.encode()))
        task = asyncio.get_running_loop().create_task(
            self._revalidate(plan, revalidation, inner, ctx.request_id)
        )
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    async def _revalidate(self, plan: Plan, ctx: GuardContext, scope: Scope, trigger: str) -> None:
        """Run the revalidation; a success replaces the entry, anything else leaves the stale one
        (and logs why). Counted in `asgi_guard_cache_lookups_total{result="revalidated" |
        "revalidation_failed"}`, decided as `cache: revalidate` on its own context, and traced as a
        `cache revalidate` span (parent of the inner stages' spans) when tracing is on."""

        async def discard(message: Message) -> None:  # no client: the answer only fills the cache
            if message["type"] == "http.response.start":
                ctx.status = message["status"]

        tracing = self.runtime.tracing
        span_cm: Any = (
            tracing.tracer.start_as_current_span(
                f"cache revalidate {self.route.label}",
                attributes={
                    "asgi_guard.route": self.route.label,
                    "asgi_guard.request_id": ctx.request_id,
                    "asgi_guard.revalidates": trigger,
                },
            )
            if tracing.active()
            else contextlib.nullcontext()
        )
        stored: Flight | None = None
        error: Exception | None = None
        with span_cm as span:
            try:
                stored = await self._fill(plan, ctx, scope, ctx.receive, discard, None, quiet=True)
            except Exception as exc:  # noqa: BLE001 - a background task: logged below, never raised
                error = exc
            finally:
                self._refreshing.discard(plan.key)
            result = "revalidated" if stored is not None else "revalidation_failed"
            if span is not None:
                span.set_attribute("asgi_guard.cache.result", result)
                if ctx.status is not None:
                    span.set_attribute("http.response.status_code", ctx.status)
        detail: dict[str, Any] = {"result": result, "revalidates": trigger, "stored": stored is not None}
        if ctx.status is not None:
            detail["status"] = ctx.status
        ctx.decide(self.name, "allowed", "revalidate", **detail)
        if stored is not None:
            self._revalidated.inc()
            log.debug(
                "cache revalidation %s (after request %s) of %s stored", ctx.request_id, trigger, ctx.path
            )
            return
        self._unrevalidated.inc()
        if isinstance(error, Problem):
            why = f"{error.status} {error.slug}"
        elif error is not None:
            why = f"{type(error).__name__}: {error}"
        else:
            why = f"status {ctx.status}, not storable" if ctx.status is not None else "no response"
        log.warning(
            "cache revalidation %s (after request %s) of %s failed (%s); the stale entry stays",
            ctx.request_id,
            trigger,
            ctx.path,
            why,
            exc_info=error if error is not None and not isinstance(error, Problem) else None,
        )

    async def _lookup(self, plan: Plan) -> tuple[Hit | None, bool]:
        """(entry or None, whether this caller holds the fill lock). While another process fills
        the key, poll for its entry with a growing pause, up to the single-flight bound."""
        found = await self._store.get(plan.key, True, plan.prints)
        if not isinstance(found, Filling):
            return found, found is None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        pause = 0.005
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
            found = await self._store.get(plan.key, True, plan.prints)
            if not isinstance(found, Filling):
                return found, found is None
        return None, False

    # -- misses ---------------------------------------------------------------------------------
    async def _fill(
        self,
        plan: Plan,
        ctx: GuardContext,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: bytes | None,
        *,
        locked: bool = False,
        own: asyncio.Future[Flight | None] | None = None,
        stale: Hit | None = None,
        quiet: bool = False,
    ) -> Flight | None:
        """Run the handler, stream its response, and store it when it may be; return what waiters
        may share (None when it was not storable). `status` None: the caller set the headers."""
        if status is not None and not quiet:
            ctx.response_headers.extend((_MISS, (_CACHE_STATUS, status)))
        key = plan.key
        rescue = None
        if stale is not None and float(stale[0].meta.get("e", 0)) > 0:
            rescue = stale
        ttl = await self._fill_ttl(plan, ctx, scope) if self._tier_ttls else self._ttl
        captured = _Capture(self, plan, send, rescue is not None, ttl, own, locked)
        try:
            error: Exception | None = None
            try:
                await self.app(scope, receive, captured)
            except Exception as exc:
                if rescue is None or captured.started:
                    raise
                error = exc
            if (
                rescue is not None
                and (error is not None or captured.held)
                and self._within_error_window(rescue)
            ):
                await self._answer_stale_if_error(rescue, ctx, scope, send)
                return None
            if error is not None:
                raise error
            await captured.flush()
            entry = captured.entry()
            if entry is None or plan.directives.no_store:
                return None
            value, verdict = entry
            variant = control.secondary(verdict.names, plan.prints)
            tags = self._tags(ctx, scope, captured.fields)
            try:
                if self._owned is not None:  # the entry counts against the filling client's share
                    await self._owned.set(
                        key, value, variant, verdict.names, tags, self._max_variants, owner=ctx.principal_key
                    )
                else:
                    await self._store.set(key, value, variant, verdict.names, tags, self._max_variants)
            except BackendUnavailable as exc:
                self._faults.inc()
                self._errors.inc()
                log.warning("cache store unavailable, response not stored: %s", exc)
                return None
            captured.released = True  # the store dropped the lock
            if not quiet:
                self._note(ctx, stored=True, key=key)
            return Flight(value, verdict.names, variant)
        finally:
            if not captured.released and (locked or own is not None):
                await captured.release()

    async def _fill_ttl(self, plan: Plan, ctx: GuardContext, scope: Scope) -> float:
        """The most seconds the entry this fill stores stays fresh: the caller's tier TTL on a
        per-principal key (a tier not listed: the default tier's, else the route TTL); on a shared
        key every tier reads the entry, so the lowest of them all (a pro fill never serves a free
        caller past the free TTL). The response's own max-age / s-maxage may only shorten it."""
        if not self._tier_ttls:
            return self._ttl
        if not plan.per_principal:
            return self._shared_ttl
        tier = await ctx.resolve_tier(scope, self._tier_ttls)
        return self._tier_ttls.get(tier, self._ttl) if tier is not None else self._ttl

    async def _answer_stale_if_error(self, found: Hit, ctx: GuardContext, scope: Scope, send: Send) -> None:
        """The handler failed (5xx or an exception): the stale entry answers instead (RFC 5861 §4)."""
        response, stored_age, _ = found
        age = stored_age + float(response.meta.get("i", 0))
        ctx.decide(self.name, "answered", "stale_if_error", hit=True, result="stale-if-error", age=int(age))
        self._hits.inc()
        ctx.response_headers[:] = [h for h in ctx.response_headers if h[0] not in (_X_CACHE, _CACHE_STATUS)]
        ctx.response_headers.extend(
            (_HIT, (_AGE, str(int(age)).encode()), (_CACHE_STATUS, b"asgi-guard; hit; detail=stale-if-error"))
        )
        await self._send_entry(response, ctx, scope, send)

    def _within_error_window(self, found: Hit) -> bool:
        response, stored_age, _ = found
        meta = response.meta
        age = stored_age + float(meta.get("i", 0))
        return age < float(meta.get("l", self._ttl)) + float(meta.get("e", 0))

    def _tags(self, ctx: GuardContext, scope: Scope, fields: control.Fields) -> list[str]:
        """Purge tags: the path (`p:`), the resource id (`r:`) and the handler's own (`t:`), from the
        tag header (in the response's `fields`) and `request.state.cache_tags`."""
        tags = ["p:" + ctx.path]
        resource = ctx.resource_id
        if resource is not None:
            tags.append("r:" + resource)
        for name in control.split_tokens(fields.get(self._tag_header)):
            tags.append("t:" + name)
        tags.extend(f"t:{name}" for name in request_tags(scope))
        return tags

    def stored_form(
        self,
        status: int,
        headers: control.RawHeaders,
        fields: control.Fields,
        body: bytes,
        verdict: control.Storability,
        names: tuple[str, ...],
    ) -> CachedResponse:
        """The entry for a response: its headers less the per-request ones (and Set-Cookie when
        the route stores despite it), with a strong ETag of the body when it has none."""
        drop = self._drop | {control.SET_COOKIE} if verdict.strip_cookie else self._drop
        kept = [(k, v) for k, v in headers if k.lower() not in drop]  # names in any case
        if self._etag and control.ETAG not in fields:
            kept.append(
                (control.ETAG, b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"')
            )
        return CachedResponse(status, tuple(kept), body, control.meta(verdict, names))

    # -- unsafe methods (RFC 9111 §4.4) ---------------------------------------------------------
    async def _invalidating(self, ctx: GuardContext, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the handler; when its answer is not an error, drop every cached entry of the
        request's path (every host, query and variant), of its Location / Content-Location paths
        and of its resource id, in every cached route, before the answer goes out (so the client's
        next read never finds the old entry)."""

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                tags = [f"p:{ctx.path}"]
                for name, value in message.get("headers", ()):
                    if name.lower() in _LOCATIONS and value.startswith(b"/") and not value.startswith(b"//"):
                        tags.append("p:" + value.decode("latin-1").split("?", 1)[0])
                if ctx.resource_id is not None:
                    tags.append(f"r:{ctx.resource_id}")
                try:
                    await CachePurger(self.runtime).purge_tags(tags)
                except BackendUnavailable as exc:
                    self._faults.inc()
                    log.warning("cache invalidation failed: %s", exc)
            await send(message)

        await self.app(scope, receive, watch)

    def _note(self, ctx: GuardContext, **detail: Any) -> None:
        """Add `detail` to this stage's decision for the request (when it made one)."""
        prior = ctx.decisions.get(self.name)
        if prior is not None:
            ctx.decide(self.name, prior.outcome, prior.reason, **{**prior.detail, **detail})

    # -- faults and bypasses --------------------------------------------------------------------
    def _bypass(self, ctx: GuardContext, detail: str) -> None:
        ctx.decide(self.name, "allowed", "bypass", hit=False, result="bypass", detail=detail)
        self._bypasses.inc()
        ctx.response_headers.extend((_MISS, (_CACHE_STATUS, f"asgi-guard; fwd={detail}".encode())))

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


def _shared(response: CachedResponse, plan: Plan) -> Flight:
    """A hit the leader found, as its waiters may share it (same variant only)."""
    names = tuple(response.meta.get("v", ()))
    return Flight(response, names, control.secondary(names, plan.prints))


class _Capture:
    """Forwards the response and keeps a copy while it stays storable. When the verdict at the
    response's start is "not storable", `release` lets waiters go at once. With `hold_errors`, a
    5xx start is held back (stale-if-error may answer instead)."""

    __slots__ = (
        "_body",
        "_complete",
        "_held",
        "_hold",
        "_locked",
        "_own",
        "_plan",
        "_send",
        "_size",
        "_stage",
        "_status",
        "_ttl",
        "_verdict",
        "fields",
        "headers",
        "names",
        "released",
        "started",
    )

    def __init__(
        self,
        stage: CacheMiddleware,
        plan: Plan,
        send: Send,
        hold_errors: bool,
        ttl: float,
        own: asyncio.Future[Flight | None] | None,
        locked: bool,
    ) -> None:
        self._stage = stage
        self._ttl = ttl
        self._plan = plan
        self._send = send
        self._own = own  # the in-process flight this fill leads
        self._locked = locked  # this fill holds the cross-process fill lock
        self.released = False  # waiters let go (or the store took the entry, dropping the lock)
        self._hold = hold_errors
        self._held: list[Message] = []
        self._body: list[bytes] = []
        self._size = 0
        self._status = 0
        self._complete = False
        self._verdict: control.Storability | None = None
        self.headers: control.RawHeaders = ()
        self.fields: control.Fields = {}
        self.names: tuple[str, ...] = ()
        self.started = False

    @property
    def held(self) -> bool:
        return bool(self._held)

    async def release(self) -> None:
        """The response will not be stored: let waiters go now (once)."""
        if self.released:
            return
        self.released = True
        stage = self._stage
        if self._own is not None:
            stage._flights.land(self._plan.key, None, self._own)
        if self._locked:
            with contextlib.suppress(BackendUnavailable):
                await stage._store.unlock(self._plan.key)

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        stage = self._stage
        if kind == "http.response.start":
            self.headers = headers = tuple(message.get("headers", ()))
            self.fields = fields = control.fields(headers, stage._fields)
            self._status = status = message["status"]
            verdict = control.storability(
                status,
                fields,
                route_ttl=self._ttl,
                stale_cap=stage._stale_cap,
                per_principal=self._plan.per_principal,
                credentialed=self._plan.credentialed,
                allow=stage._allow,
                now=0.0,
            )
            if verdict.ok and not stage._streams and control.is_stream(fields):
                verdict.ok = False
            self._verdict = verdict if verdict.ok else None
            self.names = control.vary_names(fields)
            if self._verdict is None:
                await self.release()
            if self._hold and status in _ERRORS:
                self._held.append(message)
                return
        elif kind == "http.response.body":
            if self._held:
                self._held.append(message)
                return
            if self._verdict is not None:
                chunk = message.get("body", b"")
                self._size += len(chunk)
                if self._size > stage._max_size:
                    self._verdict, self._body = None, []
                    await self.release()
                else:
                    self._body.append(chunk)
                if not message.get("more_body", False):
                    self._complete = True
        else:
            self._verdict = None
        self.started = True
        await self._send(message)

    async def flush(self) -> None:
        """Send what was held back (no stale entry could answer instead)."""
        held, self._held = self._held, []
        for message in held:
            self.started = True
            await self._send(message)

    def entry(self) -> tuple[CachedResponse, _Verdict] | None:
        verdict = self._verdict
        if verdict is None or not self._complete:
            return None
        value = self._stage.stored_form(
            self._status, self.headers, self.fields, b"".join(self._body), verdict, self.names
        )
        return value, _Verdict(self.names)


class _Verdict:
    __slots__ = ("names",)

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
