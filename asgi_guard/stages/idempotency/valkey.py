"""Idempotency records in Valkey: one hash per key, one Lua script per step (atomic, cluster-safe).

A record `prefix:idem:{key}` holds st, fp, tok, resp and `exp`, the time it ends; the scripts treat a
record past `exp` as gone, on the server's clock (or a test clock, `ValkeyBackend.script_now`). The
key's own TTL only collects garbage, a little after `exp`.
"""

from __future__ import annotations

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.idempotency.store import Claim
from asgi_guard.state.valkey import ValkeyBackend, lua

_CLAIM = lua(__package__, "idempotency_claim", retry_safe=True)  # our own token claims again
_END = lua(__package__, "idempotency_end", retry_safe=True)  # token-checked: a re-run is a no-op


class ValkeyIdempotencyStore:
    def __init__(self, backend: ValkeyBackend) -> None:
        self._backend = backend

    def _key(self, key: str) -> str:
        return self._backend.key("idem", key)

    async def claim(
        self, key: str, fingerprint: str, token: str, lock_ttl: float, owner: str | None = None
    ) -> Claim:
        backend = self._backend  # `owner`: the key's digest already scopes it; Valkey bounds memory
        args = (fingerprint, token, repr(float(lock_ttl)), backend.script_now(), backend.gc_slack_ms)
        reply = await backend.run(_CLAIM, (self._key(key),), args)
        state = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if state == "done":
            return Claim("done", CachedResponse.decode(reply[1]))
        if state == "running":
            return Claim("running")
        if state == "mismatch":
            return Claim("mismatch")
        return Claim("new")

    async def _end(self, op: str, key: str, token: str, response: bytes, ttl: float) -> bool:
        backend = self._backend
        args = (op, token, response, repr(float(ttl)), backend.script_now(), backend.gc_slack_ms)
        return bool(await backend.run(_END, (self._key(key),), args))

    async def finish(self, key: str, token: str, response: CachedResponse, ttl: float) -> bool:
        return await self._end("finish", key, token, response.encode(), ttl)

    async def release(self, key: str, token: str) -> bool:
        return await self._end("release", key, token, b"", 0.0)
