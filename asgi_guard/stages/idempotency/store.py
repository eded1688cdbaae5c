"""The Idempotency-Key record contract both forms keep (memory.py, valkey.py; meaning: reference.py).

A record is claimed as `running` with the request's fingerprint and an owner token, kept for
`lock_ttl` seconds (so a crashed worker frees it), then either finished (`done` plus the response,
kept `ttl` seconds) or released (deleted) by its owner only. A record is gone once its time is up
(`expires <= now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from asgi_guard.core.http import CachedResponse

State = Literal["new", "running", "mismatch", "done"]


@dataclass(slots=True, frozen=True)
class Claim:
    """`new`: the caller owns the key now; `running`: another owner holds it; `mismatch`: the key
    was used with another request fingerprint; `done`: `response` is the stored answer to replay."""

    state: State
    response: CachedResponse | None = None


class IdempotencyStore(Protocol):
    async def claim(
        self, key: str, fingerprint: str, token: str, lock_ttl: float, owner: str | None = None
    ) -> Claim:
        """Claim `key` for `lock_ttl` seconds, or report what holds it. `owner` (the principal)
        bounds how many records one client may hold on the embedded backend."""

    async def finish(self, key: str, token: str, response: CachedResponse, ttl: float) -> bool:
        """Store the owner's response for `ttl` seconds; False unless `token` holds a running claim."""

    async def release(self, key: str, token: str) -> bool:
        """Free the key (the request failed); False unless `token` holds a running claim."""
