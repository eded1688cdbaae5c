"""TOTP replay and lock-out state in this process: each call runs without an await (atomic on the loop).

Values carry their absolute end time, so answers do not depend on the store's lazy expiry (which only
collects garbage, a second later).
"""

from __future__ import annotations

from asgi_guard.stages.security.store import ACCEPTED, LOCKED, REPLAYED, retry_seconds
from asgi_guard.state.memory import MemoryBackend

_GC_SLACK = 1.0


class MemoryTotpStore:
    def __init__(self, backend: MemoryBackend, step_ttl: float, max_failures: int, lockout: float) -> None:
        self._clock = backend.clock
        self._steps = backend.namespace("security.totp")
        self._failures = backend.namespace("security.totp_failures")
        self._step_ttl = step_ttl
        self._max_failures = max_failures
        self._lockout = lockout

    async def claim(self, subject: str, counter: int) -> tuple[int, int]:
        now = self._clock()
        if self._max_failures:
            window = self._failures.get(subject)
            if window is not None and window[1] > now and window[0] >= self._max_failures:
                return LOCKED, retry_seconds(window[1] - now)
        last = self._steps.get(subject)
        if last is not None and last[1] > now and counter <= last[0]:
            return REPLAYED, 0
        self._steps.set(subject, (counter, now + self._step_ttl), self._step_ttl + _GC_SLACK)
        self._failures.pop(subject)
        return ACCEPTED, 0

    async def fail(self, subject: str) -> tuple[int, int]:
        now = self._clock()
        window = self._failures.get(subject)
        count, ends = (
            (window[0], window[1]) if window is not None and window[1] > now else (0, now + self._lockout)
        )
        count += 1
        self._failures.set(subject, (count, ends), ends - now + _GC_SLACK)
        return count, retry_seconds(ends - now)
