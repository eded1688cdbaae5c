"""The cache lookup, sent by the rate-limit stage in the same Valkey round trip as its decision.

On a route with both stages on Valkey, the cache stage (built first: inner stages are) registers a
`CachePrefetch` for its route in the runtime service `SERVICE`. The rate-limit stage finds it on its
first request and from then on sends the limit script and a lock-free cache lookup together
(`ValkeyRateLimiter.check_with`), then leaves what it learned in the scope under `SCOPE_KEY` for the
cache stage: the key, the request's cache directives and the entry (a hit, None for a miss, or
`NOT_FETCHED`). The cache stage answers a hit from it and otherwise runs its normal lookup, which
takes the single-flight fill lock: the prefetch never does, so a request the limit rejects (or the
idempotency stage answers) leaves no lock behind. A hit found by the prefetch counts as a use for
lru / mru / lfu even when the limit then rejects the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from starlette.types import Scope

from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.http import directives
from asgi_guard.stages.cache.keys import CacheKeyBuilder
from asgi_guard.stages.cache.store import Hit
from asgi_guard.stages.cache.valkey import ValkeyCacheStore

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.core.stage import RouteInfo
    from asgi_guard.stages.rate_limit import Decision, ValkeyRateLimiter

SERVICE: Final = "cache.prefetch"  # runtime.service(SERVICE, dict): RouteInfo -> CachePrefetch
SCOPE_KEY: Final = "asgi_guard.cache_prefetch"  # scope[SCOPE_KEY]: Prefetched


class _NotFetched:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_FETCHED"


NOT_FETCHED: Final = _NotFetched()  # no lookup was made (refresh request), or it failed

_CACHE_CONTROL = b"cache-control"
_PRAGMA = b"pragma"


class Prefetched:
    """What the rate-limit stage learned for the cache stage (one per request, in the scope)."""

    __slots__ = ("found", "key", "no_store", "refresh")

    def __init__(self, key: str, refresh: bool, no_store: bool) -> None:
        self.key = key
        self.refresh = refresh
        self.no_store = no_store
        self.found: Hit | _NotFetched | None = NOT_FETCHED


class CachePrefetch:
    """One route's cache lookup, as the rate-limit stage sends it."""

    __slots__ = ("_keys", "_store")

    def __init__(self, keys: CacheKeyBuilder, store: ValkeyCacheStore) -> None:
        self._keys = keys
        self._store = store

    async def check(
        self, limiter: ValkeyRateLimiter, identity: str, ctx: GuardContext, scope: Scope
    ) -> list[Decision]:
        """The limit's decisions (one round trip with the cache lookup); raises BackendUnavailable
        only when the limit got no answer. A failed lookup just leaves the entry NOT_FETCHED."""
        refresh, no_store = request_directives(scope["headers"])
        prefetched = scope[SCOPE_KEY] = Prefetched(await self._keys.key(ctx, scope), refresh, no_store)
        if refresh:  # the cache stage will not serve this request from the cache: nothing to fetch
            return await limiter.check(identity)
        decisions, found = await limiter.check_with(identity, self._store.lookup_call(prefetched.key))
        if not isinstance(found, BackendUnavailable):
            prefetched.found = self._store.decode(found)
        return decisions


def prefetchers(runtime: GuardRuntime) -> dict[RouteInfo[Any], CachePrefetch]:
    """The runtime's routes whose cache lookup the rate-limit stage may send (filled at build time)."""
    found: dict[RouteInfo[Any], CachePrefetch] = runtime.service(SERVICE, dict)
    return found


def request_directives(headers: Any) -> tuple[bool, bool]:
    """(refresh, no_store) from the request's Cache-Control (or Pragma when it has none)."""
    control = None
    pragma = None
    for name, value in headers:
        if name == _CACHE_CONTROL:
            control = value if control is None else control + b"," + value
        elif name == _PRAGMA:
            pragma = value
    if control is None:
        return (pragma is not None and b"no-cache" in pragma.lower()), False
    found = directives(control)
    return ("no-cache" in found or "max-age=0" in found), "no-store" in found
