"""In-process cache store: one namespace per route, bounded by `capacity`, evicting by policy."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.policies import POLICIES
from asgi_guard.stages.cache.store import Hit


class MemoryCacheStore:
    """Entries with a shared TTL, so write order is also expiry order: expired entries are dropped
    from the front of `_writes` in O(1) amortised, and never count against `capacity`."""

    __slots__ = ("_capacity", "_clock", "_entries", "_policy", "_ttl", "_writes")

    def __init__(self, algo: str, capacity: int, ttl: float, clock: Callable[[], float]) -> None:
        self._policy = POLICIES[algo]()
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[CachedResponse, float, float]] = {}  # value, stored_at, expires
        self._writes: OrderedDict[str, None] = OrderedDict()

    async def get(self, key: str, lead: bool = False) -> Hit | None:
        """(response, age, seconds left) or None; a hit counts as a use for lru/mru/lfu.
        One process: the stage's own single flight already makes a caller the only filler."""
        item = self._entries.get(key)
        if item is None:
            return None
        now = self._clock()
        value, stored_at, expires = item
        if expires <= now:
            self._forget(key)
            return None
        self._policy.hit(key)
        return value, max(0.0, now - stored_at), expires - now

    async def set(self, key: str, value: CachedResponse) -> list[str]:
        """Store `value`; returns the keys evicted to make room (oldest decision first)."""
        now = self._clock()
        self._purge(now)
        evicted: list[str] = []
        if key not in self._entries:
            while len(self._entries) >= self._capacity:
                victim = self._policy.victim()
                if victim is None:
                    break
                self._forget(victim)
                evicted.append(victim)
        self._entries[key] = (value, now, now + self._ttl)
        self._writes[key] = None
        self._writes.move_to_end(key)
        self._policy.stored(key)
        return evicted

    async def unlock(self, key: str) -> None:
        """Nothing to do: memory stores take no cross-process fill lock."""

    def _purge(self, now: float) -> None:
        writes, entries = self._writes, self._entries
        while writes:
            key = next(iter(writes))
            if entries[key][2] > now:
                return
            self._forget(key)

    def _forget(self, key: str) -> None:
        self._entries.pop(key, None)
        self._writes.pop(key, None)
        self._policy.remove(key)

    def __len__(self) -> int:
        return len(self._entries)
