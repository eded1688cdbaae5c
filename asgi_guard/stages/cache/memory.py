"""In-process cache store: one namespace per route, bounded by `capacity`, evicting by policy, and
bounded per owner so one client's flood of distinct keys evicts its own entries, not another's.

Owners (issue 13, "bounded state per client"): an entry belongs to the owner whose write created
it (the stage passes the request's principal, `ctx.principal_key`: the JWT subject, else the client
IP); a rewrite keeps it, entries written without an owner share the owner None. Each owner has its
own eviction order of the route's algorithm over its own entries, and the victim is always one
owner's own victim:
- an owner already holding `max_per_owner` entries that stores a new key loses its own victim;
- else, when the namespace is full, the writer loses its own victim when it holds as many entries
  as any owner, otherwise the owner holding the most entries does (the one that came to hold that
  many first).
So an owner loses an entry to another owner's write only while it holds the most entries of all,
and more than the writer; with a single owner this is the plain namespace (reference.py has both).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.control import secondary
from asgi_guard.stages.cache.policies import POLICIES, EvictionPolicy
from asgi_guard.stages.cache.store import Hit

Owner = Hashable  # a principal (str), or None for entries stored without one


class _Entry:
    __slots__ = ("expires", "names", "owner", "tags", "variants")

    def __init__(self, names: tuple[str, ...], expires: float, owner: Owner) -> None:
        self.names = names
        self.expires = expires
        self.owner = owner
        self.variants: dict[str, tuple[CachedResponse, float]] = {}  # variant -> (value, stored_at)
        self.tags: set[str] = set()


_TABLES: dict[str, Callable[[], Any]] = {
    "_entries": dict,
    "_writes": OrderedDict,
    "_tags": dict,
    "_policies": dict,
    "_held": dict,
}


class MemoryCacheStore:
    """Entries with a shared storage life, so write order is also expiry order: expired entries are
    dropped from the front of `_writes` in O(1) amortised, and never count against `capacity`.
    Per owner, O(1) too: each owner's eviction policy, and owners bucketed by how many entries they
    hold (`_held`: count -> owners in the order they came to hold that many).

    Every route with a cache declares its store at start-up, and most stay empty for a long time
    (10,000 routes: ~5 MiB of empty tables): each table is made on its first use (`__getattr__`,
    called only while its slot is unset), so an unused store is its slots alone."""

    _entries: dict[str, _Entry]
    _writes: OrderedDict[str, None]
    _tags: dict[str, set[str]]
    _policies: dict[Owner, EvictionPolicy]  # owner -> its entries' eviction order
    _held: dict[int, OrderedDict[Owner, None]]

    __slots__ = (
        "_algo",
        "_capacity",
        "_clock",
        "_entries",
        "_held",
        "_most",
        "_per_owner",
        "_policies",
        "_tags",
        "_ttl",
        "_writes",
    )

    def __init__(
        self,
        algo: str,
        capacity: int,
        ttl: float,
        clock: Callable[[], float],
        *,
        max_per_owner: int | None = None,
    ) -> None:
        self._algo: type[EvictionPolicy] = POLICIES[algo]
        self._capacity = capacity
        self._per_owner = max_per_owner
        self._ttl = ttl
        self._clock = clock
        self._most = 0  # the most entries any owner holds

    def __getattr__(self, name: str) -> Any:
        """A table's first use: make it empty (only reached while its slot is unset)."""
        make = _TABLES.get(name)
        if make is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        table = make()
        object.__setattr__(self, name, table)
        return table

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
        self._policies[entry.owner].hit(key)
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
        *,
        owner: Owner = None,
    ) -> list[str]:
        """Store `value`; returns the keys evicted to make room (oldest decision first). `owner`
        (the principal whose request filled it) owns a new entry; a rewrite keeps its owner."""
        now = self._clock()
        self._purge(now)
        evicted: list[str] = []
        entry = self._entries.get(key)
        if entry is None:
            while (victim := self._victim(owner)) is not None:
                self._forget(victim)
                evicted.append(victim)
        names = tuple(names)
        variant = variant or secondary(names, {})
        full = entry is not None and variant not in entry.variants and len(entry.variants) >= max_variants
        if entry is None or entry.names != names or full:
            if entry is not None:
                self._untag(key, entry)
                owner = entry.owner
            else:
                self._count(owner, +1)
            entry = self._entries[key] = _Entry(names, now + self._ttl, owner)
        entry.expires = now + self._ttl
        entry.variants[variant] = (value, now)
        tagged = self._tags
        for tag in tags:
            entry.tags.add(tag)
            members = tagged.get(tag)
            if members is None:
                tagged[tag] = {key}
            else:
                members.add(key)
        writes = self._writes
        writes.pop(key, None)  # the newest write goes last: write order is expiry order
        writes[key] = None
        self._policies[entry.owner].stored(key)
        return evicted

    def _victim(self, writer: Owner) -> str | None:
        """The key to evict before `writer` stores a new one (None: there is room)."""
        policy = self._policies.get(writer)
        mine = 0 if policy is None else len(policy)
        if self._per_owner is not None and mine >= self._per_owner:
            return policy.victim() if policy is not None else None
        if len(self._entries) < self._capacity:
            return None
        if policy is not None and mine >= self._most:
            return policy.victim()
        heaviest = self._held.get(self._most)
        if not heaviest:
            return None
        return self._policies[next(iter(heaviest))].victim()

    def _count(self, owner: Owner, step: int) -> None:
        """`owner` holds one entry more (+1) or fewer (-1): rebucket it (at the end of its new bucket)."""
        policy = self._policies.get(owner)
        if policy is None:
            policy = self._policies[owner] = self._algo()
            held = 0
        else:
            held = len(policy) if step > 0 else len(policy) + 1  # a removal already left the policy
        bucket = self._held.get(held)
        if bucket is not None:
            bucket.pop(owner, None)
            if not bucket:
                del self._held[held]
        now_held = held + step
        if now_held > 0:
            self._held.setdefault(now_held, OrderedDict())[owner] = None
        else:
            del self._policies[owner]
        if now_held > self._most:
            self._most = now_held
        elif held == self._most and held not in self._held:
            self._most = held - 1  # counts move by one: the next bucket down holds this owner

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

    def owned(self, owner: Owner) -> int:
        """How many entries (live, or expired and not yet dropped) `owner` holds."""
        policy = self._policies.get(owner)
        return 0 if policy is None else len(policy)

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
        if entry is None:
            return
        self._untag(key, entry)
        self._writes.pop(key, None)
        self._policies[entry.owner].remove(key)
        self._count(entry.owner, -1)

    def __len__(self) -> int:
        return len(self._entries)
