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


class MemoryIdempotencyStore:
    def __init__(self, backend: MemoryBackend) -> None:
        self._records = backend.namespace("idempotency")

    async def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> Claim:
        record: _Record | None = self._records.get(key)
        if record is None:
            self._records.set(key, _Record("running", fingerprint, token), lock_ttl)
            return Claim("new")
        if record.fingerprint != fingerprint:
            return Claim("mismatch")
        if record.state == "running":
            return Claim("running")
        return Claim("done", record.response)

    async def finish(self, key: str, token: str, response: CachedResponse, ttl: float) -> bool:
        record: _Record | None = self._records.get(key)
        if record is None or record.token != token or record.state != "running":
            return False
        self._records.set(key, _Record("done", record.fingerprint, token, response), ttl)
        return True

    async def release(self, key: str, token: str) -> bool:
        record: _Record | None = self._records.get(key)
        if record is None or record.token != token or record.state != "running":
            return False
        self._records.pop(key)
        return True
