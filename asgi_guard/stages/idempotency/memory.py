"""Idempotency records in this process; each step runs without an await, so it is atomic on the loop."""

from __future__ import annotations

from dataclasses import dataclass

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.idempotency.store import Claim
from asgi_guard.state.memory import MemoryBackend


@dataclass(slots=True)
class _Record:
    state: str
    fingerprint: str
    token: str
    response: CachedResponse | None = None
    owner: str | None = None


class MemoryIdempotencyStore:
    def __init__(self, backend: MemoryBackend) -> None:
        # Per owner: another client's flood of keys evicts its own oldest records, not this one's.
        self._records = backend.namespace("idempotency", per_owner=True)

    async def claim(
        self, key: str, fingerprint: str, token: str, lock_ttl: float, owner: str | None = None
    ) -> Claim:
        record: _Record | None = self._records.get(key)
        if record is None:
            self._records.set(key, _Record("running", fingerprint, token, owner=owner), lock_ttl, owner=owner)
            return Claim("new")
        if record.fingerprint != fingerprint:
            return Claim("mismatch")
        if record.state == "running":  # the owner's own claim again (a retried call) is new
            return Claim("new" if record.token == token else "running")
        return Claim("done", record.response)

    async def finish(self, key: str, token: str, response: CachedResponse, ttl: float) -> bool:
        record: _Record | None = self._records.get(key)
        if record is None or record.token != token or record.state != "running":
            return False
        self._records.set(
            key, _Record("done", record.fingerprint, token, response, record.owner), ttl, owner=record.owner
        )
        return True

    async def release(self, key: str, token: str) -> bool:
        record: _Record | None = self._records.get(key)
        if record is None or record.token != token or record.state != "running":
            return False
        self._records.pop(key)
        return True
