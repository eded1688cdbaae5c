"""What every cache store offers the cache stage, whatever holds the entries."""

from __future__ import annotations

from enum import Enum
from typing import Literal, Protocol

from asgi_guard.core.http import CachedResponse

Hit = tuple[CachedResponse, float, float]  # response, age seconds, seconds left


class Filling(Enum):
    """Another process holds the fill lock for this key: wait for its entry instead of running."""

    WAIT = "wait"


WAIT: Literal[Filling.WAIT] = Filling.WAIT


class CacheStore(Protocol):
    async def get(self, key: str, lead: bool = False) -> Hit | Filling | None:
        """The entry, else None; with `lead`, None means this caller now holds the fill lock and WAIT
        that another one does (stores without cross-process locks never answer WAIT)."""

    async def set(self, key: str, value: CachedResponse) -> list[str]:
        """Store (and drop the fill lock); return the keys evicted to make room, first evicted first."""

    async def unlock(self, key: str) -> None:
        """Drop the fill lock without storing (the response was not storable)."""
