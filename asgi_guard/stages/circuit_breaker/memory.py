"""In-process breaker: pybreaker's own state machine, driven from async code.

pybreaker's `call_async` needs Tornado and its calls hold a lock around the wrapped function, so
instead admission is decided here from its storage, and each finished call's outcome is replayed
through `CircuitBreaker.call` (a function that returns or raises). Nothing awaits, nothing blocks.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import NoReturn

import pybreaker
from pybreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN

from asgi_guard.stages.circuit_breaker.store import ADMIT_CLOSED, Admission, Breaker


class LocalStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker state plus the half-open trial flag, in this process."""

    def __init__(self) -> None:
        super().__init__("asgi-guard-memory")
        self._state: str = STATE_CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at: datetime | None = None
        self.trial_running = False

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state

    def increment_counter(self) -> None:
        self._failures += 1

    def reset_counter(self) -> None:
        self._failures = 0

    def increment_success_counter(self) -> None:
        self._successes += 1

    def reset_success_counter(self) -> None:
        self._successes = 0

    @property
    def counter(self) -> int:
        return self._failures

    @property
    def success_counter(self) -> int:
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._opened_at = value


class _Failure(Exception):
    """Stands for a failed call when replaying its outcome through pybreaker."""


def _succeed() -> None:
    return None


def _fail() -> NoReturn:
    raise _Failure


class LocalBreaker(Breaker):
    def __init__(self, name: str, threshold: int, timeout: float, listener: pybreaker.CircuitBreakerListener):
        self.storage = LocalStorage()
        self.timeout = timeout
        self.cb = pybreaker.CircuitBreaker(
            fail_max=threshold,
            reset_timeout=timeout,
            state_storage=self.storage,
            listeners=[listener],
            name=name,
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        return self.storage.state

    async def acquire(self, token: str) -> Admission:
        storage = self.storage
        state = storage.state
        if state == STATE_CLOSED:
            failures = storage.counter
            return ADMIT_CLOSED if not failures else Admission(True, STATE_CLOSED, failures=failures)
        if state == STATE_OPEN:
            opened = storage.opened_at
            remaining = opened.timestamp() + self.timeout - time.time() if opened is not None else 0.0
            if remaining > 0:
                return Admission(False, STATE_OPEN, retry_after=remaining, failures=storage.counter)
            self.cb.half_open()
        elif storage.trial_running:
            return Admission(False, STATE_HALF_OPEN, retry_after=1.0, failures=storage.counter)
        storage.trial_running = True
        return Admission(True, STATE_HALF_OPEN, trial=True, failures=storage.counter)

    async def record(self, admission: Admission, token: str, ok: bool) -> None:
        if ok and admission is ADMIT_CLOSED:
            return  # a success in a healthy circuit changes nothing
        storage = self.storage
        if admission.trial:
            storage.trial_running = False
            if storage.state != STATE_HALF_OPEN:
                return
        elif storage.state != STATE_CLOSED:
            return  # a late result from a call admitted before the circuit opened
        with contextlib.suppress(_Failure, pybreaker.CircuitBreakerError):
            self.cb.call(_succeed if ok else _fail)

    async def release(self, admission: Admission, token: str) -> None:
        if admission.trial:
            self.storage.trial_running = False
