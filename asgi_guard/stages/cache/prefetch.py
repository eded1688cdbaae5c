"""The cache lookup as a rider (`asgi_guard.state.valkey.Riders`) of an outer stage's round trip.

On Valkey, the cache stage registers a `CacheRider` for its route on the backend's `riders`. An
outer stage that makes a round trip anyway (the rate limiter) carries it: it asks the rider to
`board` (plan the request, hand over the lookup), sends both scripts together, and hands the
lookup's answer to `land`, which leaves it in the scope under `SCOPE_KEY` for the cache stage. The
lookup takes the single-flight fill lock on a miss (so a miss costs no second lookup); a carrier
that rejects the request calls `abandon`, which drops that lock again. Neither stage imports the
other.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

from starlette.types import Scope

from asgi_guard.core.context import SCOPE_KEY as GUARD_KEY
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.stages.cache.keys import LOOKUP, CacheKeyBuilder, Plan
from asgi_guard.stages.cache.store import MISGUESSED, Filling, Hit
from asgi_guard.state.valkey import ScriptCall

if TYPE_CHECKING:
    from asgi_guard.stages.cache.valkey import ValkeyCacheStore

SCOPE_KEY: Final = "asgi_guard.cache_prefetch"  # scope[SCOPE_KEY]: Prefetched


class _NotFetched:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_FETCHED"


NOT_FETCHED: Final = _NotFetched()  # no lookup was made, or it failed


class Prefetched:
    """What the carried lookup learned for the cache stage (one per request, in the scope)."""

    __slots__ = ("found", "locked", "plan")

    def __init__(self, plan: Plan, locked: bool) -> None:
        self.plan = plan
        self.locked = locked  # the lookup asked for the fill lock
        self.found: Hit | Filling | _NotFetched | None = NOT_FETCHED


class CacheRider:
    """One route's cache lookup, as the carrier sends it."""

    __slots__ = ("_keys", "_store")

    def __init__(self, keys: CacheKeyBuilder, store: ValkeyCacheStore) -> None:
        self._keys = keys
        self._store = store

    async def board(self, scope: Scope) -> ScriptCall | None:
        plan = await self._keys.plan(scope[GUARD_KEY], scope)
        if plan.mode != LOOKUP:  # refresh, bypass, pass: nothing to fetch
            scope[SCOPE_KEY] = Prefetched(plan, False)
            return None
        # credentials the guard did not verify never lead a fill; HEAD never fills
        lead = not plan.credentialed and not plan.head
        scope[SCOPE_KEY] = Prefetched(plan, lead)
        return self._store.lookup_call(plan.key, lead, plan.prints)

    def land(self, scope: Scope, answer: Any) -> None:
        pre: Prefetched | None = scope.get(SCOPE_KEY)
        if pre is None:
            return
        if isinstance(answer, BackendUnavailable):
            pre.locked = False
            return
        found = self._store.decode(answer, pre.plan.key)
        if found is MISGUESSED:  # the entry has other Vary names: the stage looks up itself
            pre.locked = False
            return
        pre.found = found
        if found is not None:
            pre.locked = False  # a hit or WAIT: this request took no lock

    async def abandon(self, scope: Scope) -> None:
        pre: Prefetched | None = scope.pop(SCOPE_KEY, None)
        if pre is not None and pre.locked and pre.found is None:
            with contextlib.suppress(BackendUnavailable):
                await self._store.unlock(pre.plan.key)
