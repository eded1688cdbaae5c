"""The async protocol every shared-state backend follows.

Policies (rate limits, cache, credits, ...) own their own logic: each has a memory form that works on
`MemoryBackend.namespace(...)` and a Valkey form that runs one Lua script through `ValkeyBackend.run`.
The backend only gives them storage, time, scripts and bounded calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Backend(ABC):
    kind: str = "abstract"

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
