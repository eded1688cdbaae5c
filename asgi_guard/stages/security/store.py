"""The TOTP step-up store both forms keep (memory.py, valkey.py; meaning: reference.py).

Per subject: the last accepted time step (kept `step_ttl` seconds: a code is good once, also across
workers) and a wrong-code window (opened by the first wrong code, `lockout` seconds long). While the
window holds `max_failures` wrong codes (0: no lock-out), every claim is refused as LOCKED. Accepting
a code closes the window. Times are absolute: a state whose end time is `<= now` is gone.
"""

from __future__ import annotations

import math
from typing import Protocol

ACCEPTED, REPLAYED, LOCKED = 1, 0, -1


def retry_seconds(remaining: float) -> int:
    """Whole seconds a client waits (Retry-After): rounded up, at least 1, never too early."""
    return max(1, math.ceil(remaining))


class TotpStore(Protocol):
    async def claim(self, subject: str, counter: int) -> tuple[int, int]:
        """(ACCEPTED | REPLAYED | LOCKED, seconds until the lock-out ends; 0 unless LOCKED).

        Accepts time step `counter` only if it is newer than the last accepted one and the subject
        is not locked out. Raises BackendUnavailable when the shared store does not answer."""

    async def fail(self, subject: str) -> tuple[int, int]:
        """Count a wrong code: (wrong codes in the current window, seconds the window has left)."""
