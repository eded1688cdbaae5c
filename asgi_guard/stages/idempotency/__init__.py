"""Idempotency-Key records: claim a key, then store the response for replay or release the key."""

from __future__ import annotations

from asgi_guard.stages.idempotency.memory import MemoryIdempotencyStore
from asgi_guard.stages.idempotency.store import Claim, IdempotencyStore
from asgi_guard.stages.idempotency.valkey import ValkeyIdempotencyStore
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend, choose


def build_store(backend: Backend) -> IdempotencyStore:
    """The record store for `backend` (chosen once, at pipeline build time)."""

    def memory(b: MemoryBackend) -> IdempotencyStore:
        return MemoryIdempotencyStore(b)

    def valkey(b: ValkeyBackend) -> IdempotencyStore:
        return ValkeyIdempotencyStore(b)

    return choose(backend, memory=memory, valkey=valkey, concern="idempotency")


__all__ = ["Claim", "IdempotencyStore", "MemoryIdempotencyStore", "ValkeyIdempotencyStore", "build_store"]
