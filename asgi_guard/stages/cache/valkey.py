"""Valkey cache store: value and eviction bookkeeping change together in one Lua script.

A route's namespace is `prefix:cache:{label}`: entries `...:e:<digest>` (hash of value and store
time, with the TTL), the eviction order `...:o` (zset), expiry times `...:x` (zset), a use counter
`...:n`, and fill locks `...:l:<digest>`. They share the `{label}` hash tag, so one script touches
one cluster slot. A miss looked up with `lead` also takes the fill lock in the same script, so
processes sharing the server run the handler once per key (single flight across processes).
"""

from __future__ import annotations

from typing import Any

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.store import WAIT, Filling, Hit
from asgi_guard.state.valkey import ScriptCall, ValkeyBackend, lua

_GET = lua(__package__, "cache_get", retry_safe=True)  # read-only
_SET = lua(__package__, "cache_set", retry_safe=True)  # writes the same entry again


class ValkeyCacheStore:
    __slots__ = (
        "_algo",
        "_backend",
        "_capacity",
        "_entry_prefix",
        "_expiry",
        "_lock_ms",
        "_lock_prefix",
        "_order",
        "_seq",
        "_ttl_ms",
    )

    def __init__(
        self,
        backend: ValkeyBackend,
        namespace: str,
        algo: str,
        capacity: int,
        ttl: float,
        fill_lock: float = 5.0,
    ) -> None:
        self._backend = backend
        base = backend.key("cache", namespace)
        self._entry_prefix = f"{base}:e:"
        self._lock_prefix = f"{base}:l:"
        self._order = f"{base}:o"
        self._expiry = f"{base}:x"
        self._seq = f"{base}:n"
        self._algo = algo
        self._capacity = capacity
        self._ttl_ms = int(ttl * 1000)
        self._lock_ms = max(1, int(fill_lock * 1000))

    def _keys(self, key: str) -> tuple[str, str, str, str, str]:
        return (self._entry_prefix + key, self._order, self._expiry, self._seq, self._lock_prefix + key)

    async def get(self, key: str, lead: bool = False) -> Hit | Filling | None:
        found = await self._backend.run(
            _GET, self._keys(key), (key, self._algo, self._lock_ms if lead else 0)
        )
        if found == 0:
            return WAIT
        return self.decode(found)

    def lookup_call(self, key: str) -> ScriptCall:
        """The lookup of `key` as a script call for `ValkeyBackend.run_many` (the rate-limit stage
        sends it with its own script). It never takes the fill lock; a hit counts as a use."""
        return (_GET, self._keys(key), (key, self._algo, 0))

    @staticmethod
    def decode(found: Any) -> Hit | None:
        """cache_get's answer to a lookup that did not lock: the hit, or None."""
        if not found:
            return None
        raw, age_ms, ttl_ms = found
        return CachedResponse.decode(raw), max(0, int(age_ms)) / 1000, max(0, int(ttl_ms)) / 1000

    async def set(self, key: str, value: CachedResponse) -> list[str]:
        evicted = await self._backend.run(
            _SET,
            self._keys(key),
            (key, value.encode(), self._ttl_ms, self._capacity, self._algo, self._entry_prefix),
        )
        return [v.decode() if isinstance(v, bytes) else str(v) for v in evicted or ()]

    async def unlock(self, key: str) -> None:
        await self._backend.call(self._backend.client.delete(self._lock_prefix + key))
