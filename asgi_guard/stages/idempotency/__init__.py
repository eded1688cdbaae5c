"""Idempotency-Key records: claim a key, then store the response for replay or release the key."""

from __future__ import annotations

from asgi_guard.stages.idempotency.memory import MemoryIdempotencyStore
from asgi_guard.stages.idempotency.store import Claim, IdempotencyStore
from asgi_guard.stages.idempotency.valkey import ValkeyIdempotencyStore
from asgi_guard.state import Backend, choose


def build_store(backend: Backend) -> IdempotencyStore:
    """The record store for `backend` (chosen once, at pipeline build time)."""
    return choose(
        backend, memory=MemoryIdempotencyStore, valkey=ValkeyIdempotencyStore, concern="idempotency"
    )


__all__ = ["Claim", "IdempotencyStore", "MemoryIdempotencyStore", "ValkeyIdempotencyStore", "build_store"]
