"""The breaker's meaning as a pure, clock-injected state machine: what memory and Lua must both do.

It is pybreaker's machine as `CircuitBreakerConfig` configures it (`fail_max = threshold`,
`reset_timeout = timeout`, `success_threshold = 1`): closed counts consecutive failures and a success
resets the count; `threshold` failures open the circuit; once `timeout` seconds have passed since it
opened, the next call is the trial (half-open); the trial's success closes it, its failure counts one
more failure and re-opens it. Two things pybreaker leaves to its caller are fixed here, because calls
overlap in an async server: admission is decided when a call starts (a result that arrives after the
circuit left "closed" is ignored, unless it is the trial's), and the trial holds its slot for at most
`lease` seconds (so a process that dies mid-trial cannot wedge the circuit); while it holds it, other
calls are refused with `retry_after` = 1 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN

from asgi_guard.stages.circuit_breaker.store import ADMIT_CLOSED, TRIAL_BUSY_RETRY, Admission


@dataclass(slots=True)
class ReferenceBreaker:
    threshold: int
    timeout: float
    lease: float
    state: str = STATE_CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_until: float = 0.0
    trial_token: str | None = None

    def acquire(self, token: str, now: float) -> Admission:
        if self.state == STATE_CLOSED:
            failures = self.failures
            return ADMIT_CLOSED if not failures else Admission(True, STATE_CLOSED, failures=failures)
        if self.state == STATE_OPEN:
            remaining = self.opened_at + self.timeout - now
            if remaining > 0:
                return Admission(False, STATE_OPEN, retry_after=remaining, failures=self.failures)
            self.state = STATE_HALF_OPEN
        elif self.trial_until > now:
            if self.trial_token == token:  # the trial's own call again (a retry after a lost reply)
                return Admission(True, STATE_HALF_OPEN, trial=True, failures=self.failures)
            return Admission(False, STATE_HALF_OPEN, retry_after=TRIAL_BUSY_RETRY, failures=self.failures)
        self.trial_until, self.trial_token = now + self.lease, token
        return Admission(True, STATE_HALF_OPEN, trial=True, failures=self.failures)

    def record(self, admission: Admission, token: str, ok: bool, now: float) -> None:
        if admission.trial:
            if self.state != STATE_HALF_OPEN or self.trial_token != token:
                return  # its lease ran out and another call took the trial
            self.trial_until, self.trial_token = 0.0, None
            if ok:
                self.state, self.failures = STATE_CLOSED, 0
            else:
                self.state, self.failures, self.opened_at = STATE_OPEN, self.failures + 1, now
            return
        if self.state != STATE_CLOSED:
            return  # a late result from a call admitted before the circuit opened
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.state, self.opened_at = STATE_OPEN, now

    def release(self, admission: Admission, token: str, now: float) -> None:
        if admission.trial and self.state == STATE_HALF_OPEN and self.trial_token == token:
            self.trial_until, self.trial_token = 0.0, None
