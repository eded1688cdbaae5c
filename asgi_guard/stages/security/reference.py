"""TOTP replay and lock-out as a pure, clock-injected model: what memory.py and security_totp.lua do.

See `store.py` for the rules. States are (value, end time); one whose end time is `<= now` is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgi_guard.stages.security.store import ACCEPTED, LOCKED, REPLAYED, retry_seconds


@dataclass
class ReferenceTotp:
    step_ttl: float
    max_failures: int
    lockout: float
    steps: dict[str, tuple[int, float]] = field(default_factory=dict)
    windows: dict[str, tuple[int, float]] = field(default_factory=dict)

    @staticmethod
    def _live(states: dict[str, tuple[int, float]], subject: str, now: float) -> tuple[int, float] | None:
        state = states.get(subject)
        return state if state is not None and state[1] > now else None

    def claim(self, subject: str, counter: int, now: float) -> tuple[int, int]:
        window = self._live(self.windows, subject, now)
        if self.max_failures and window is not None and window[0] >= self.max_failures:
            return LOCKED, retry_seconds(window[1] - now)
        last = self._live(self.steps, subject, now)
        if last is not None and counter <= last[0]:
            return REPLAYED, 0
        self.steps[subject] = (counter, now + self.step_ttl)
        self.windows.pop(subject, None)
        return ACCEPTED, 0

    def fail(self, subject: str, now: float) -> tuple[int, int]:
        window = self._live(self.windows, subject, now)
        count, ends = window if window is not None else (0, now + self.lockout)
        self.windows[subject] = (count + 1, ends)
        return count + 1, retry_seconds(ends - now)
