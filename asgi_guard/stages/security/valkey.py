"""TOTP replay and lock-out state in Valkey: one atomic script per call, so every worker agrees."""

from __future__ import annotations

from asgi_guard.stages.security.store import LOCKED, retry_seconds
from asgi_guard.state.valkey import ValkeyBackend, lua

_SCRIPT = lua(__package__, "security_totp")


class ValkeyTotpStore:
    def __init__(self, backend: ValkeyBackend, step_ttl: float, max_failures: int, lockout: float) -> None:
        self._backend = backend
        self._params = (repr(float(step_ttl)), max_failures, repr(float(lockout)))

    async def _run(self, subject: str, mode: str, counter: int) -> tuple[int, float]:
        backend = self._backend
        keys = [backend.key("security", subject, "totp"), backend.key("security", subject, "totp_fail")]
        args = [mode, counter, *self._params, backend.script_now(), backend.gc_slack_ms]
        result, remaining = await backend.run(_SCRIPT, keys, args)
        return int(result), float(remaining)

    async def claim(self, subject: str, counter: int) -> tuple[int, int]:
        outcome, remaining = await self._run(subject, "claim", counter)
        return outcome, retry_seconds(remaining) if outcome == LOCKED else 0

    async def fail(self, subject: str) -> tuple[int, int]:
        count, remaining = await self._run(subject, "fail", 0)
        return count, retry_seconds(remaining)
