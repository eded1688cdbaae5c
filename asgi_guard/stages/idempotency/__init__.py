"""Idempotency-Key records: claim a key, then store the response for replay or release the key."""

from asgi_guard.stages.idempotency.store import (
    Claim,
    IdempotencyStore,
    MemoryIdempotencyStore,
    ValkeyIdempotencyStore,
    build_store,
)

__all__ = ["Claim", "IdempotencyStore", "MemoryIdempotencyStore", "ValkeyIdempotencyStore", "build_store"]
