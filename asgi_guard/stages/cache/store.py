"""What every cache store offers the cache stage, whatever holds the entries.

An entry is one primary key (see `keys`) holding up to `max_variants` variants: the responses for
each combination of the request headers its Vary names (RFC 9111 §4.1). A lookup hands the store
the request's header fingerprint (`control.fingerprint`); the store picks the variant itself, so a
hit is one call whatever the Vary. Entries carry purge tags (the route's resource id, the path,
and the handler's own `Cache-Tag`s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Literal, Protocol

from asgi_guard.core.http import CachedResponse

Hit = tuple[CachedResponse, float, float]  # response, age seconds (since stored), seconds left in store


class Filling(Enum):
    """Another process holds the fill lock for this key: wait for its entry instead of running."""

    WAIT = "wait"


WAIT: Literal[Filling.WAIT] = Filling.WAIT


class Misguessed(Enum):
    """A lookup guessed the entry's Vary names wrong (a store that guesses them: Valkey); the store
    now knows them, so the same lookup made again is right."""

    MISGUESSED = "misguessed"


MISGUESSED: Literal[Misguessed.MISGUESSED] = Misguessed.MISGUESSED


class CacheStore(Protocol):
    async def get(
        self, key: str, lead: bool = False, prints: Mapping[str, str] | None = None
    ) -> Hit | Filling | None:
        """The variant of `key` the fingerprint `prints` selects, else None; with `lead`, None means
        this caller now holds the fill lock and WAIT that another one does (stores without
        cross-process locks never answer WAIT)."""

    async def set(
        self,
        key: str,
        value: CachedResponse,
        variant: str = "",
        names: Sequence[str] = (),
        tags: Sequence[str] = (),
        max_variants: int = 16,
    ) -> list[str]:
        """Store variant `variant` (see `control.secondary`; "" = the no-Vary one) of `key`, whose
        Vary `names` it is; other names drop the older variants. Drops the fill lock; returns the
        keys evicted to make room, first evicted first."""

    async def unlock(self, key: str) -> None:
        """Drop the fill lock without storing (the response was not storable)."""

    async def purge(self, keys: Sequence[str] = (), tags: Sequence[str] = ()) -> int:
        """Drop the entries `keys` and every entry tagged with one of `tags`, atomically (one script
        on Valkey); returns how many entries went."""

    async def clear(self) -> int:
        """Drop every entry of the namespace; returns how many went."""
