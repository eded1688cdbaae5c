"""In-process cache store: one namespace per route, bounded by `capacity`, evicting by policy."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.control import secondary
from asgi_guard.stages.cache.policies import POLICIES
from asgi_guard.stages.cache.store import Hit


class _Entry:
    __slots__ = ("expires", "names", "tags", "variants")

    def __init__(self, names: tuple[str, ...], expires: float) -> None:
        self.names = names
        self.expires = expires
        self.variants: dict[str, tuple[CachedResponse, float]] = {}  # variant -> (value, stored_at)
        self.tags: set[str] = set()


class MemoryCacheStore:
    """Entries with a shared storage life, so write order is also expiry order: expired entries are
    dropped from the front of `_writes` in O(1) amortised, and never count against `capacity`."""

    __slots__ = ("_capacity", "_clock", "_entries", "_policy", "_tags", "_ttl", "_writes")

    def __init__(self, algo: str, capacity: int, ttl: float, clock: Callable[[], float]) -> None:
        self._policy = POLICIES[algo]()
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._writes: OrderedDict[str, None] = OrderedDict()
        self._tags: dict[str, set[str]] = {}

    async def get(self, key: str, lead: bool = False, prints: Mapping[str, str] | None = None) -> Hit | None:
        """(response, age, seconds left) or None; a hit counts as a use for lru/mru/lfu.
        One process: the stage's own single flight already makes a caller the only filler."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if entry.expires <= now:
            self._forget(key)
            return None
        found = entry.variants.get(secondary(entry.names, prints if prints is not None else {}))
        if found is None:
            return None
        self._policy.hit(key)
        value, stored_at = found
        return value, max(0.0, now - stored_at), entry.expires - now

    async def set(
        self,
        key: str,
        value: CachedResponse,
        variant: str = "",
        names: Sequence[str] = (),
        tags: Sequence[str] = (),
        max_variants: int = 16,
    ) -> list[str]:
        """Store `value`; returns the keys evicted to make room (oldest decision first)."""
        now = self._clock()
        self._purge(now)
        evicted: list[str] = []
        entry = self._entries.get(key)
        if entry is None:
            while len(self._entries) >= self._capacity:
                victim = self._policy.victim()
                if victim is None:
                    break
                self._forget(victim)
                evicted.append(victim)
        names = tuple(names)
        variant = variant or secondary(names, {})
        full = entry is not None and variant not in entry.variants and len(entry.variants) >= max_variants
        if entry is None or entry.names != names or full:
            if entry is not None:
                self._untag(key, entry)
            entry = self._entries[key] = _Entry(names, now + self._ttl)
        entry.expires = now + self._ttl
        entry.variants[variant] = (value, now)
        for tag in tags:
            entry.tags.add(tag)
            self._tags.setdefault(tag, set()).add(key)
        self._writes[key] = None
        self._writes.move_to_end(key)
        self._policy.stored(key)
        return evicted

    async def unlock(self, key: str) -> None:
        """Nothing to do: memory stores take no cross-process fill lock."""

    async def purge(self, keys: Sequence[str] = (), tags: Sequence[str] = ()) -> int:
        doomed = set(keys)
        for tag in tags:
            doomed |= self._tags.pop(tag, set())
        count = 0
        for key in doomed:
            if key in self._entries:
                self._forget(key)
                count += 1
        return count

    async def clear(self) -> int:
        return await self.purge(list(self._entries))

    def _purge(self, now: float) -> None:
        writes, entries = self._writes, self._entries
        while writes:
            key = next(iter(writes))
            if entries[key].expires > now:
                return
            self._forget(key)

    def _untag(self, key: str, entry: _Entry) -> None:
        for tag in entry.tags:
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._untag(key, entry)
        self._writes.pop(key, None)
        self._policy.remove(key)

    def __len__(self) -> int:
        return len(self._entries)
