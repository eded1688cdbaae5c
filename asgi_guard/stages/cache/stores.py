"""Cache eviction policies (fifo, lifo, lru, mru, lfu), each in a memory and a Valkey (Lua) form."""

from __future__ import annotations

from asgi_guard.stages.cache.memory import MemoryCacheStore
from asgi_guard.stages.cache.policies import POLICIES, EvictionPolicy
from asgi_guard.stages.cache.store import WAIT, CacheStore, Filling, Hit
from asgi_guard.stages.cache.valkey import ValkeyCacheStore
from asgi_guard.state import Backend, MemoryBackend, choose


def build_store(
    backend: Backend,
    namespace: str,
    algo: str,
    capacity: int,
    ttl: float,
    fill_lock: float = 5.0,
    *,
    max_per_owner: int | None = None,
) -> CacheStore:
    """The store for one route's namespace on `backend` (chosen once, at pipeline build time).
    `max_per_owner`: entries one owner may hold in the embedded store (None: no bound of its own;
    see `memory`); the Valkey form does not track owners."""

    def memory(b: MemoryBackend) -> MemoryCacheStore:
        # kept in the backend's own namespace (no module global): apps sharing one MemoryBackend
        # share the cache, and two backends in one process never do
        stores = b.namespace("cache.stores")
        name = f"{namespace}\x00{algo}\x00{capacity}\x00{ttl}\x00{max_per_owner}"
        store: MemoryCacheStore | None = stores.get(name)
        if store is None:
            store = MemoryCacheStore(algo, capacity, ttl, b.clock, max_per_owner=max_per_owner)
            stores.set(name, store)
        return store

    return choose(
        backend,
        memory=memory,
        valkey=lambda b: ValkeyCacheStore(b, namespace, algo, capacity, ttl, fill_lock),
        concern="the response cache",
    )


__all__ = [
    "POLICIES",
    "WAIT",
    "CacheStore",
    "EvictionPolicy",
    "Filling",
    "Hit",
    "MemoryCacheStore",
    "ValkeyCacheStore",
    "build_store",
]
