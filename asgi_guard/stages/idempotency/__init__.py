"""Idempotency-Key records: claim a key, then store the response for replay or release the key.

The names below are imported on first use (`import asgi_guard` loads none of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from asgi_guard.stages.idempotency.memory import MemoryIdempotencyStore
    from asgi_guard.stages.idempotency.store import Claim, IdempotencyStore
    from asgi_guard.stages.idempotency.valkey import ValkeyIdempotencyStore
    from asgi_guard.state import Backend


def build_store(backend: Backend) -> IdempotencyStore:
    """The record store for `backend` (chosen once, at pipeline build time)."""
    from asgi_guard.stages.idempotency.memory import MemoryIdempotencyStore
    from asgi_guard.stages.idempotency.valkey import ValkeyIdempotencyStore
    from asgi_guard.state import choose

    return choose(
        backend, memory=MemoryIdempotencyStore, valkey=ValkeyIdempotencyStore, concern="idempotency"
    )


__getattr__ = lazy_exports(
    __name__,
    {
        "Claim": "store",
        "IdempotencyStore": "store",
        "MemoryIdempotencyStore": "memory",
        "ValkeyIdempotencyStore": "valkey",
    },
)

__all__ = ["Claim", "IdempotencyStore", "MemoryIdempotencyStore", "ValkeyIdempotencyStore", "build_store"]
