"""Breaker state shared by every process through Valkey: one Lua call per admission.

breaker.lua holds the authoritative state machine (closed -> open after `threshold`
consecutive failures, open -> half-open after the timeout with one trial holding a lease, then closed
or open again). A local pybreaker instance mirrors each reply, so its listeners report every change
this process observes. A result is written back only when it changes something: a failure, a trial's
outcome, or a success after failures (counted at admission, or since seen by this process); a plain
success in a healthy circuit costs no second call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pybreaker
from pybreaker import STATE_CLOSED, STATE_HALF_OPEN

from asgi_guard.stages.circuit_breaker.store import ADMIT_CLOSED, STATE_NAMES, Admission
from asgi_guard.state.valkey import ValkeyBackend, lua

_SCRIPT = lua(__package__, "breaker", retry_safe=True)  # token-checked; a lost failure may count twice


class MirrorStorage(pybreaker.CircuitBreakerStorage):
    """The last state Valkey reported; pybreaker's own resets are no-ops here."""

    def __init__(self) -> None:
        super().__init__("asgi-guard-valkey-mirror")
        self._state: str = STATE_CLOSED
        self.failures = 0

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state

    @property
    def counter(self) -> int:
        return self.failures

    @property
    def success_counter(self) -> int:
        return 0

    @property
    def opened_at(self) -> datetime | None:
        return None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        pass


class SharedBreaker:
    def __init__(
        self,
        backend: ValkeyBackend,
        name: str,
        threshold: int,
        timeout: float,
        lease: float,
        listener: pybreaker.CircuitBreakerListener | None = None,
    ) -> None:
        self.backend = backend
        self.keys = [backend.key("breaker", name)]
        self.params = [threshold, timeout, lease]
        self.storage = MirrorStorage()
        self.cb = pybreaker.CircuitBreaker(
            fail_max=threshold,
            reset_timeout=timeout,
            state_storage=self.storage,
            listeners=[listener] if listener is not None else [],
            name=name,
        )

    @property
    def state(self) -> str:
        return self.storage.state

    def _observe(self, reply: Any) -> Admission:
        allowed, code, trial, failures = int(reply[0]), int(reply[1]), int(reply[2]), int(reply[4])
        state = STATE_NAMES[code]
        storage = self.storage
        storage.failures = failures
        if state != storage.state:
            storage.state = state
            _ = self.cb.state  # pybreaker notices the change and notifies its listeners
        if allowed and state == STATE_CLOSED and not failures:
            return ADMIT_CLOSED
        return Admission(bool(allowed), state, bool(trial), float(reply[3]), failures)

    async def _run(self, op: str, token: str, ok: bool = False, trial: bool = False) -> Admission:
        args = [op, *self.params, token, int(ok), int(trial), self.backend.script_now()]
        return self._observe(await self.backend.run(_SCRIPT, self.keys, args))

    async def acquire(self, token: str) -> Admission:
        return await self._run("acquire", token)

    async def record(self, admission: Admission, token: str, ok: bool) -> None:
        clean = not admission.failures and not self.storage.failures  # none at admission, none seen since
        if ok and clean and not admission.trial and admission.state == STATE_CLOSED:
            return  # nothing to reset
        await self._run("record", token, ok, admission.trial)

    async def release(self, admission: Admission, token: str) -> None:
        if admission.trial and admission.state == STATE_HALF_OPEN:
            await self._run("release", token)
