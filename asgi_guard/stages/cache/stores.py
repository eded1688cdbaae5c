"""Cache eviction policies (fifo, lifo, lru, mru, lfu), each in a memory and a Valkey (Lua) form."""

from __future__ import annotations

import weakref

from asgi_guard.stages.cache.memory import MemoryCacheStore
from asgi_guard.stages.cache.policies import POLICIES, EvictionPolicy
from asgi_guard.stages.cache.store import WAIT, CacheStore, Filling, Hit
from asgi_guard.stages.cache.valkey import ValkeyCacheStore
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend

# Memory namespaces live with their backend, so apps sharing one MemoryBackend share the cache.
_MEMORY: weakref.WeakKeyDictionary[MemoryBackend, dict[str, MemoryCacheStore]] = weakref.WeakKeyDictionary()


def build_store(
    backend: Backend, namespace: str, algo: str, capacity: int, ttl: float, fill_lock: float = 5.0
) -> CacheStore:
    """The store for one route's namespace on `backend` (chosen once, at pipeline build time)."""
    if isinstance(backend, ValkeyBackend):
        return ValkeyCacheStore(backend, namespace, algo, capacity, ttl, fill_lock)
    if isinstance(backend, MemoryBackend):
        stores = _MEMORY.setdefault(backend, {})
        name = f"{namespace}\x00{algo}\x00{capacity}\x00{ttl}"
        store = stores.get(name)
        if store is None:
            store = stores[name] = MemoryCacheStore(algo, capacity, ttl, backend.clock)
        return store
    raise TypeError(f"no cache store for backend {type(backend).__name__}")


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
