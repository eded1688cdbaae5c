"""In-process breaker: pybreaker's own state machine, driven from async code on the injected clock.

pybreaker's `call_async` needs Tornado and its calls hold a lock around the wrapped function, so
instead admission is decided here from its storage, and each finished call's outcome is replayed
through `CircuitBreaker.call` (a function that returns or raises). Nothing awaits, nothing blocks.
pybreaker stamps `opened_at` with its own wall clock; the storage takes the backend's clock instead,
so an injected clock drives every transition (tests need no sleeps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

import pybreaker
from pybreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN

from asgi_guard.stages.circuit_breaker.store import ADMIT_CLOSED, TRIAL_BUSY_RETRY, Admission


class LocalStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker state plus the half-open trial slot (its holder's token and lease), in this process."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__("asgi-guard-memory")
        self._clock = clock
        self._state: str = STATE_CLOSED
        self._failures = 0
        self._successes = 0
        self.opened_ts = 0.0
        self.trial_until = 0.0
        self.trial_token: str | None = None

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
        return datetime.fromtimestamp(self.opened_ts, UTC) if self.opened_ts else None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.opened_ts = self._clock()  # pybreaker passes its wall clock; the injected one decides

    def end_trial(self) -> None:
        self.trial_until, self.trial_token = 0.0, None


class _Failure(Exception):
    """Stands for a failed call when replaying its outcome through pybreaker."""


def _succeed() -> None:
    return None


def _fail() -> NoReturn:
    raise _Failure


class LocalBreaker:
    def __init__(
        self,
        name: str,
        threshold: int,
        timeout: float,
        lease: float,
        listener: pybreaker.CircuitBreakerListener | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or time.time
        self.storage = LocalStorage(self._clock)
        self.timeout = timeout
        self.lease = lease
        self.cb = pybreaker.CircuitBreaker(
            fail_max=threshold,
            reset_timeout=timeout,
            state_storage=self.storage,
            listeners=[listener] if listener is not None else [],
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
        now = self._clock()
        if state == STATE_OPEN:
            remaining = storage.opened_ts + self.timeout - now
            if remaining > 0:
                return Admission(False, STATE_OPEN, retry_after=remaining, failures=storage.counter)
            self.cb.half_open()
        elif storage.trial_until > now:
            if storage.trial_token == token:  # the trial's own call again (a retry after a lost reply)
                return Admission(True, STATE_HALF_OPEN, trial=True, failures=storage.counter)
            return Admission(False, STATE_HALF_OPEN, retry_after=TRIAL_BUSY_RETRY, failures=storage.counter)
        storage.trial_until, storage.trial_token = now + self.lease, token
        return Admission(True, STATE_HALF_OPEN, trial=True, failures=storage.counter)

    async def record(self, admission: Admission, token: str, ok: bool) -> None:
        storage = self.storage
        if admission.trial:
            if storage.state != STATE_HALF_OPEN or storage.trial_token != token:
                return  # its lease ran out and another call holds the trial now
            storage.end_trial()
        elif storage.state != STATE_CLOSED:
            return  # a late result from a call admitted before the circuit opened
        elif ok and not storage.counter:
            return  # a success in a healthy circuit changes nothing
        try:
            self.cb.call(_succeed if ok else _fail)
        except (_Failure, pybreaker.CircuitBreakerError) as exc:
            exc.__traceback__ = None  # its frames hold it: a cycle per failure otherwise

    async def release(self, admission: Admission, token: str) -> None:
        storage = self.storage
        if admission.trial and storage.state == STATE_HALF_OPEN and storage.trial_token == token:
            storage.end_trial()
