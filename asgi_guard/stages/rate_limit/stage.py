"""Stage 3: rate limiting (429), by the route's limits, on the embedded store or Valkey.

Everything that depends only on the route (limits, key recipe, header bytes, metric children, the
backend form) is prepared in `__init__`; a request costs a key build, one decision (a dict lookup in
memory, one Lua round trip on Valkey) and a header append. On Valkey, a script an inner stage
registered for the route (`ValkeyBackend.riders`: the cache lookup) rides in the same round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from math import ceil
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.context import Decision as Decided
from asgi_guard.core.cost import CostSource
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.exemptions import may_exempt
from asgi_guard.core.problems import Problem, backend_unavailable
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.rate_limit import (
    MemoryRateLimiter,
    ValkeyRateLimiter,
    rate_limiter,
    spec_from_sections,
    specs_from_config,
)
from asgi_guard.stages.rate_limit.headers import (
    POLICY,
    RATELIMIT,
    RETRY_AFTER,
    item_prefixes,
    legacy_headers,
    policy_value,
    ratelimit_value,
    retry_after_seconds,
)
from asgi_guard.stages.rate_limit.reference import ALWAYS_RECORDED, WEIGHTED
from asgi_guard.stages.rate_limit.spec import Decision
from asgi_guard.state.keys import EVERYONE, NO_VALUE, client_block, fallback_identity, key_part
from asgi_guard.state.valkey import Riders

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.rate_limit.config import RateLimitConfig

_NO_RESOURCE = NO_VALUE
_new_tuple = tuple.__new__  # a NamedTuple straight from its fields: a third of its own __new__
Part = Callable[[GuardContext, Scope, "str | None"], str]


def _header_part(name: bytes, prefix: int) -> Part:
    def part(ctx: GuardContext, scope: Scope, resource: str | None) -> str:
        for key, value in scope["headers"]:
            if key == name:
                return key_part(value.decode("latin-1"))
        # No header: fall back to the client IP (as Kong does), marked so no header value can equal it.
        return fallback_identity(client_block(ctx.client_ip, prefix))

    return part


def _constant(value: str) -> Part:
    return lambda ctx, scope, resource: value


def _user_part(prefix: int) -> Part:
    def part(ctx: GuardContext, scope: Scope, resource: str | None) -> str:
        principal = ctx.principal
        if principal is not None:
            return key_part(principal.subject)
        return fallback_identity(client_block(ctx.client_ip, prefix))  # never equal to a subject

    return part


def _ip_part(prefix: int) -> Part:
    return lambda ctx, scope, resource: fallback_identity(client_block(ctx.client_ip, prefix))


def _resource(ctx: GuardContext, scope: Scope, resource: str | None) -> str:
    return _NO_RESOURCE if resource is None else key_part(resource)


# State keys by (recipe, subject, client address, resource id), shared by every route's stage: a
# client's next request reuses its key instead of escaping its parts again. Bounded: at most
# `_KEYS_MAX` entries (emptied when full), of parts up to `_CACHED_PART` characters: about 1.5 KB an
# entry at worst (non-ASCII parts), so a few MiB whatever clients send.
_KEYS: dict[tuple[str, str | None, str, str | None], str] = {}
_KEYS_MAX = 2048
_CACHED_PART = 64


class RateLimitMiddleware(Stage["RateLimitConfig"]):
    """429 past any of the route's limits; headers with the remaining quota on every response."""

    name = "rate_limit"
    section = "rate_limit"

    def __init__(
        self,
        app: ASGIApp,
        route: RouteInfo[RateLimitConfig],
        runtime: GuardRuntime,
        *,
        tier: str | None = None,
    ) -> None:
        super().__init__(app, route, runtime)
        rl = self.config
        if tier is None:
            self.specs = specs = specs_from_config(rl)
        else:  # one tier's limits (the route's stage dispatches to it: see _tiers)
            self.specs = specs = tuple(spec_from_sections(s) for s in rl.tier_limits(tier))
        # a route with tiers runs one such stage per tier, chosen per request by the route's tier
        # selector (JobConfig insists on one when rate_limit.tiers is set)
        self._exemptible = tier is None and (
            self.name in route.exempt or may_exempt(self.name, runtime.settings.exempt)
        )
        self._tiers = (
            {t: RateLimitMiddleware(app, route, runtime, tier=t) for t in rl.tiers}
            if tier is None and rl.tiers
            else None
        )
        self.shadow = rl.shadow
        self.fail_open = rl.fail_open
        label = route.trace_label  # the DESIGN's `{trace_label}:{user}:{resource_id}`

        # -- the limit key --------------------------------------------------------------------
        parts: list[Part] = []
        for part in rl.key_by:
            if part == "route":
                parts.append(_constant(key_part(label)))
            elif part == "global":
                parts.append(_constant(EVERYONE))
            elif part == "user":
                parts.append(_user_part(rl.ipv6_prefix))
            elif part == "ip":
                parts.append(_ip_part(rl.ipv6_prefix))
            elif part == "resource":
                parts.append(_resource)
            else:
                parts.append(_header_part(part[7:].encode("latin-1"), rl.ipv6_prefix))
        self._parts = tuple(parts)
        self._label = key_part(label)
        self._v6 = rl.ipv6_prefix
        self._default_key = tuple(rl.key_by) == ("route", "user", "resource")
        self._uses_resource = "resource" in rl.key_by
        self._resource_from_body = self._uses_resource and route.resource_id_from_body
        self._cost = CostSource(rl.cost, runtime.settings.trusted_proxies)
        self._fixed_cost = self._cost.fixed

        # -- the backend form, chosen once ----------------------------------------------------
        backend = self.backend  # bounded by the route's pooling.socket_timeout, if it has one
        self._memory: MemoryRateLimiter | None = None
        self._valkey: ValkeyRateLimiter | None = None
        self._riders: Riders | None = None  # inner stages' calls riding the limit's round trip
        store = rate_limiter(backend, specs)  # the backend is bounded by the route's pooling
        if isinstance(store, MemoryRateLimiter):  # the memory form answers without awaiting: hot path
            self._memory = store
        elif isinstance(store, ValkeyRateLimiter):  # may carry the cache lookup in its round trip
            self._valkey = store
            self._riders = getattr(backend, "riders", None)

        # the hot path (memory, one limit, a key from who/where/what only, a fixed cost): keys cached
        self._keyed_by_client = all(
            part in ("route", "global", "user", "ip", "resource") for part in rl.key_by
        )
        self._check_key = (
            self._memory.check_key
            if self._memory is not None
            and len(specs) == 1
            and self._keyed_by_client
            and not self._exemptible
            and self._tiers is None
            and not self._resource_from_body
            and self._fixed_cost is not None
            else None
        )
        self._hot_cost: int = self._fixed_cost if self._fixed_cost is not None else 1
        # the resource id on the hot path: the path parameter (the body is never read there)
        self._resource_field = route.resource_id_field if self._uses_resource else None

        # -- wire details and metrics ---------------------------------------------------------
        self._headers = rl.headers
        self._legacy = rl.legacy_headers
        self._single = len(specs) == 1
        self._primary = specs[0].name
        self._policy_header = (POLICY, policy_value(specs))
        self._prefixes = item_prefixes(specs)
        self._prefix = self._prefixes[0].encode()
        self._suffix = self._memory.suffix if self._memory is not None else ""
        # everything a cached key depends on besides (subject, address, resource): one string
        self._recipe = f"{self._label}\x1e{','.join(rl.key_by)}\x1e{rl.ipv6_prefix}\x1e{self._suffix}"
        metrics = runtime.metrics
        self._m_allowed = metrics.rate_limit.labels(route.label, specs[0].name, "allowed")
        # the per-request "allowed" count is skipped when metrics are off (the default)
        self._count_allowed = runtime.settings.metrics_on
        verdict = "shadow_rejected" if rl.shadow else "rejected"
        self._m_rejected = {s.name: metrics.rate_limit.labels(route.label, s.name, verdict) for s in specs}
        self._m_fault = metrics.backend_faults.labels(route.label, self.name)
        self._m_exempt = metrics.rate_limit.labels(route.label, "-", "exempt")  # policy: none applied

    @classmethod
    def enabled_for(cls, config: RateLimitConfig) -> bool:
        return config.enabled

    @classmethod
    def needs_body(cls, config: RateLimitConfig) -> bool:
        return config.cost.source == "body"  # the route's resource id from the body is the stack's

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        """The hot path (one limit on the embedded store, nothing to await) decides here and hands
        on the inner app's coroutine: no coroutine layer of its own. A 429 is raised from the call
        itself, which the stack's `await` sees as from any stage. Everything else: `_decide`."""
        check_key = self._check_key
        if check_key is None:
            return self._decide(scope, receive, send)
        ctx: GuardContext = scope[SCOPE_KEY]
        resource = None
        if self._resource_field is not None:  # ctx.resource_id, which is the path parameter here
            resource = ctx.path_params.get(self._resource_field)
            if resource is not None and type(resource) is not str:
                resource = str(resource)
        principal = ctx.principal
        cached = (self._recipe, None if principal is None else principal.subject, ctx.client_ip, resource)
        key = _KEYS.get(cached)
        if key is None:
            key = self._remember(ctx, scope, cached)
        decision = check_key(key, self._hot_cost)
        if decision[0]:  # allowed
            if self._count_allowed:
                self._m_allowed.inc()
            if self._headers:
                ctx.response_headers += (
                    self._policy_header,
                    (RATELIMIT, b"%s%d;t=%d" % (self._prefix, decision[1], ceil(decision[2]))),
                )
            if self._legacy:
                ctx.response_headers += legacy_headers(self.specs, (Decision._make(decision),))
            # ctx.decide(name, "allowed", allowed=True, policy=..., remaining=...), built directly
            ctx.decisions[self.name] = _new_tuple(
                Decided,
                (
                    self.name,
                    "allowed",
                    None,
                    {"allowed": True, "policy": self._primary, "remaining": decision[1]},
                ),
            )
        else:
            self._reject(
                ctx, [Decision._make(decision)], self._hot_cost
            )  # raises the 429 unless in shadow mode
        return self.app(scope, receive, send)

    async def _decide(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        if self._exemptible and await ctx.exempt_from(self.name, scope):
            self._m_exempt.inc()
            ctx.decide(self.name, "allowed", "exempt", allowed=True)
            await self.app(scope, receive, send)
            return
        if self._tiers is not None:
            tier = await ctx.resolve_tier(scope, self._tiers)
            chosen = self._tiers.get(tier) if tier is not None else None
            if chosen is not None:
                await chosen(scope, receive, send)
                return
        if self._resource_from_body:
            resource = await ctx.resolve_resource_id()
        else:
            resource = ctx.resource_id if self._uses_resource else None
        identity = self._identity(ctx, scope, resource)
        cost = self._fixed_cost
        if cost is None:
            cost = await self._cost(ctx, scope)

        memory = self._memory
        if memory is not None and self._single:  # the hot path: one limit, embedded store
            decision = memory.check_one(identity, cost)
            if decision.allowed:
                if self._count_allowed:
                    self._m_allowed.inc()
                if self._headers:
                    ctx.response_headers += (
                        self._policy_header,
                        (
                            RATELIMIT,
                            f"{self._prefixes[0]}{decision.remaining};t={ceil(decision.reset)}".encode(),
                        ),
                    )
                if self._legacy:
                    ctx.response_headers += legacy_headers(self.specs, (decision,))
                ctx.decide(
                    self.name, "allowed", allowed=True, policy=self._primary, remaining=decision.remaining
                )
                await self.app(scope, receive, send)
                return
            decisions = [decision]
        elif memory is not None:
            decisions = memory.check(identity, cost)
        else:
            limiter, riders = self._valkey, self._riders
            assert limiter is not None and riders is not None
            try:
                decisions = await riders.carry(
                    self.route,
                    scope,
                    lambda: limiter.check(identity, cost=cost),
                    lambda call: limiter.check_with(identity, call, cost),
                )
            except BackendUnavailable:
                self._m_fault.inc()
                if not self.fail_open:
                    ctx.decide(self.name, "rejected", "backend_unavailable", allowed=False)
                    raise backend_unavailable(self.name) from None
                ctx.decide(self.name, "allowed", "fail_open", allowed=True)
                await self.app(scope, receive, send)
                return

        for decision in decisions:
            if not decision.allowed:
                if self._riders is not None and not self.shadow:
                    await self._riders.abandon(self.route, scope)
                self._reject(ctx, decisions, cost)
                await self.app(scope, receive, send)  # shadow mode: counted, not enforced
                return
        if self._count_allowed:
            self._m_allowed.inc()
        if self._headers:
            ctx.response_headers += (
                self._policy_header,
                (RATELIMIT, ratelimit_value(self._prefixes, decisions)),
            )
        if self._legacy:
            ctx.response_headers += legacy_headers(self.specs, decisions)
        ctx.decide(
            self.name,
            "allowed",
            allowed=True,
            policy=self._primary,
            remaining=min(d.remaining for d in decisions),
        )
        if self._riders is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            # A stage between this one and the rider's (idempotency's 409, credits' 402, ...) may
            # answer before the rider takes what rode along: release it (a cache fill lock would
            # otherwise make every client of that URL wait out single_flight_timeout). A no-op
            # once the rider has taken it.
            await self._riders.abandon(self.route, scope)

    def _identity(self, ctx: GuardContext, scope: Scope, resource: str | None) -> str:
        """The limit key's identity part: `{route}:{user}:{resource}` by default (see `key_by`)."""
        if self._default_key:
            res = _NO_RESOURCE if resource is None else key_part(resource)
            principal = ctx.principal
            if principal is not None:
                user = key_part(principal.subject)
            else:  # the anonymous client's identity is guard-made: no subject can equal it
                user = "~" + key_part(client_block(ctx.client_ip, self._v6))  # fallback_identity
            return f"{self._label}:{user}:{res}"
        return ":".join([part(ctx, scope, resource) for part in self._parts])

    def _remember(
        self, ctx: GuardContext, scope: Scope, cached: tuple[str, str | None, str, str | None]
    ) -> str:
        """The hot path's state key (identity + the limiter's suffix), kept in `_KEYS` when its
        parts are short."""
        _, who, address, resource = cached
        key = self._identity(ctx, scope, resource) + self._suffix
        if (
            (who is None or len(who) <= _CACHED_PART)
            and (resource is None or len(resource) <= _CACHED_PART)
            and len(address) <= _CACHED_PART
        ):
            if len(_KEYS) >= _KEYS_MAX:
                _KEYS.clear()
            _KEYS[cached] = key
        return key

    def _unconsumed(self, decisions: list[Decision], cost: int) -> list[Decision]:
        """A rejected request consumed nothing: limits that would have admitted it keep its units."""
        return [
            d._replace(remaining=d.remaining + (cost if spec.code in WEIGHTED else 1))
            if d.allowed and spec.code not in ALWAYS_RECORDED
            else d
            for spec, d in zip(self.specs, decisions, strict=True)
        ]

    def _reject(self, ctx: GuardContext, decisions: list[Decision], cost: int = 1) -> None:
        """Count the rejection; raise the 429 unless the route is in shadow mode."""
        index = next(i for i, d in enumerate(decisions) if not d.allowed)
        spec = self.specs[index]
        seconds = retry_after_seconds(max(d.retry_after for d in decisions if not d.allowed))
        self._m_rejected[spec.name].inc()
        if self._headers:
            shown = self._unconsumed(decisions, cost) if len(decisions) > 1 else decisions
            ctx.response_headers.append(self._policy_header)
            ctx.response_headers.append((RATELIMIT, ratelimit_value(self._prefixes, shown)))
        if self._legacy:
            shown = self._unconsumed(decisions, cost) if len(decisions) > 1 else decisions
            ctx.response_headers += legacy_headers(self.specs, shown)
        ctx.decide(
            self.name,
            "allowed" if self.shadow else "rejected",
            "shadow_rejected" if self.shadow else "rate_limited",
            allowed=False,
            policy=spec.name,
            remaining=0,
            retry_after=seconds,
            shadow=self.shadow,
        )
        if self.shadow:
            return
        detail = f"rate limit policy '{spec.name}' ({spec.summary}) exceeded; retry after {seconds} s"
        extra: dict[str, object] = {"policy": spec.name, "retry_after": seconds}
        if cost != 1:
            extra["cost"] = cost
            if spec.code in WEIGHTED and cost > spec.quota:
                detail = (
                    f"this request costs {cost} units, more than policy '{spec.name}' ({spec.summary})"
                    " ever allows at once"
                )
            else:
                detail = f"this request costs {cost} units; {detail}"
        raise Problem(
            429,
            "rate-limited",
            "Too Many Requests",
            detail,
            headers=[(RETRY_AFTER, str(seconds).encode())],
            extra=extra,
        )
