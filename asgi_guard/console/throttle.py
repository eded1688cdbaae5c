"""Failed console logins, counted per client so a token cannot be guessed at wire speed.

The console has one credential (its token) and no user names, so the throttle is per client: an IPv4
address, or an IPv6 /64 (one subscriber holds a whole /64, RFC 6177: rotating addresses inside it
gets no fresh budget). Every wrong credential counts (a login form post, a wrong `Authorization:
Bearer`, a stale session cookie); a request with no credential at all does not (a browser's first
visit). After `attempts` failures within `window` seconds, counted from the first, the client gets
429 with `Retry-After` for whatever it presents, right token included, until the window ends: the
check comes before the token is compared, so guessing goes no faster than `attempts` per `window`.

State is one bounded map in this process (`asgi_guard.state.memory.ExpiringStore`: entries expire
with their window, at most `max_clients` are kept, the least recently failed goes first). A flood of
distinct clients can only evict its own oldest counters, each of which it would need a fresh /64 for.
With several worker processes each counts on its own (the bound per client is then `attempts` x
workers per window): put the console behind `console_allow` as well.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from asgi_guard.state.keys import client_block
from asgi_guard.state.memory import ExpiringStore

DEFAULT_ATTEMPTS = 5
DEFAULT_WINDOW = 300.0  # seconds
DEFAULT_MAX_CLIENTS = 10_000


class LoginThrottle:
    """At most `attempts` failed credentials per client in `window` seconds (see the module)."""

    __slots__ = ("_attempts", "_clock", "_failures", "_window")

    def __init__(
        self,
        attempts: int = DEFAULT_ATTEMPTS,
        window: float = DEFAULT_WINDOW,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1 or window <= 0:
            raise ValueError("the console login throttle needs attempts >= 1 and window > 0")
        self._attempts = attempts
        self._window = window
        self._clock = clock
        # client block -> (failures, end of its window on `clock`)
        self._failures = ExpiringStore(clock, max_clients)

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may try again; 0 when it may try now."""
        entry: tuple[int, float] | None = self._failures.get(client_block(client))
        if entry is None or entry[0] < self._attempts:
            return 0
        return max(1, math.ceil(entry[1] - self._clock()))

    def failed(self, client: str) -> int:
        """Count one failed credential; return `retry_after` as it is now."""
        key = client_block(client)
        entry = self._failures.get(key)
        now = self._clock()
        count, ends = (0, now + self._window) if entry is None else entry
        self._failures.set(key, (count + 1, ends), ends - now)
        return self.retry_after(client)

    def succeeded(self, client: str) -> None:
        """A right credential (while not locked out) clears the client's count."""
        self._failures.pop(client_block(client))
