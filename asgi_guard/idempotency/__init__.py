"""Idempotency-Key records: claim a key, then store the response for replay or release the key."""

from .store import Claim, IdempotencyStore, MemoryIdempotencyStore, ValkeyIdempotencyStore, build_store

__all__ = ["Claim", "IdempotencyStore", "MemoryIdempotencyStore", "ValkeyIdempotencyStore", "build_store"]
