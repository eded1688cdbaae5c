"""Idempotency records in memory or in Valkey (one Lua script per step, one key per record).

A record is claimed as `running` with the request's fingerprint and an owner token, kept for
`lock_ttl` (so a crashed worker frees it), then either finished (`done` plus the response, for
`ttl`) or released (deleted) by its owner only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from asgi_guard.core.http import CachedResponse
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend
from asgi_guard.state.valkey import lua

_CLAIM = lua(__package__, "idempotency_claim")
_END = lua(__package__, "idempotency_end")

State = Literal["new", "running", "mismatch", "done"]


@dataclass(slots=True, frozen=True)
class Claim:
    state: State
    response: CachedResponse | None = None


class IdempotencyStore(Protocol):
    async def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> Claim: ...

    async def finish(self, key: str, token: str, response: CachedResponse, ttl: float) -> bool: ...

    async def release(self, key: str, token: str) -> bool: ...


@dataclass(slots=True)
class _Record:
    state: str
    fingerprint: str
    token: str
    response: CachedResponse | None = None


class MemoryIdempotencyStore:
    """Per-process records; each step runs without an await, so it is atomic on the event loop."""

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


class ValkeyIdempotencyStore:
    """Records as hashes `prefix:idem:{digest}` (fields st, fp, tok, resp) with a TTL."""

    def __init__(self, backend: ValkeyBackend) -> None:
        self._backend = backend

    def _key(self, key: str) -> str:
        return self._backend.key("idem", key)

    async def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> Claim:
        reply = await self._backend.run(_CLAIM, (self._key(key),), (fingerprint, token, int(lock_ttl * 1000)))
        state = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if state == "done":
            return Claim("done", CachedResponse.decode(reply[1]))
        if state == "running":
            return Claim("running")
        if state == "mismatch":
            return Claim("mismatch")
        return Claim("new")

    async def finish(self, key: str, token: str, response: CachedResponse, ttl: float) -> bool:
        done = await self._backend.run(
            _END, (self._key(key),), ("finish", token, response.encode(), int(ttl * 1000))
        )
        return bool(done)

    async def release(self, key: str, token: str) -> bool:
        done = await self._backend.run(_END, (self._key(key),), ("release", token, b"", 0))
        return bool(done)


def build_store(backend: Backend) -> IdempotencyStore:
    """The record store for `backend` (chosen once, at pipeline build time)."""
    if isinstance(backend, ValkeyBackend):
        return ValkeyIdempotencyStore(backend)
    if isinstance(backend, MemoryBackend):
        return MemoryIdempotencyStore(backend)
    raise TypeError(f"no idempotency store for backend {type(backend).__name__}")
