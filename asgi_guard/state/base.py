"""The async protocol every shared-state backend follows.

Policies (rate limits, cache, credits, ...) own their own logic: each has a memory form that works on
`MemoryBackend.namespace(...)` and a Valkey form that runs one Lua script through `ValkeyBackend.run`.
The backend only gives them storage, time, scripts and bounded calls.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable


class Backend(ABC):
    """`kind` names the form each concern's store takes on this backend (see `asgi_guard.state.choose`);
    `clock` is the process clock stages read local time from (injected in tests; the shared
    decisions of a Valkey backend use the server's clock, see `ValkeyBackend.script_now`)."""

    kind: str = "abstract"
    clock: Callable[[], float] = staticmethod(time.time)

    def bounded(self, timeout: float) -> Backend:
        """This backend as one route sees it: every call bounded by `timeout` seconds (a route's
        `pooling.socket_timeout`). Shares connections and state with `self`; in-process forms,
        whose calls never wait on a network, return `self`."""
        return self

    async def start(self) -> None:
        """Connect (idempotent)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the backend answers."""

    @abstractmethod
    async def now(self) -> float:
        """Seconds since the epoch from the one clock every process shares."""
