"""The breaker contract both forms keep, what it answers per call, and the states as pybreaker names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pybreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN

STATE_CODES = {STATE_CLOSED: 0, STATE_HALF_OPEN: 1, STATE_OPEN: 2}
STATE_NAMES = {code: name for name, code in STATE_CODES.items()}


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a call may run; `trial` marks the single half-open probe; `retry_after` in seconds;
    `failures` the consecutive failures counted when it was admitted."""

    allowed: bool
    state: str
    trial: bool = False
    retry_after: float = 0.0
    failures: int = 0


ADMIT_CLOSED = Admission(True, STATE_CLOSED)  # closed with no failures counted: a success records nothing
TRIAL_BUSY_RETRY = 1.0  # seconds a caller refused while another holds the half-open trial waits


class Breaker(Protocol):
    """One route's circuit (memory: `LocalBreaker`; Valkey: `SharedBreaker`; meaning: `reference`).

    `acquire` before the call, then exactly one of `record` or `release`. Both forms make the
    transitions of `reference.ReferenceBreaker` under the same clock (tests/circuit_breaker/
    test_cb_properties.py)."""

    async def acquire(self, token: str) -> Admission:
        """Admit or refuse a call (`token` identifies a half-open trial across processes)."""

    async def record(self, admission: Admission, token: str, ok: bool) -> None:
        """The call's outcome: success or failure (exception, 5xx, time-out)."""

    async def release(self, admission: Admission, token: str) -> None:
        """The call ended without an outcome (cancelled): free a trial slot, count nothing."""

    @property
    def state(self) -> str:
        """The last state this process saw."""
