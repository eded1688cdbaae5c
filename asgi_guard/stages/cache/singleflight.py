"""Single flight: concurrent misses on one key wait for the first one's response (per process)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.control import secondary


@dataclass(slots=True, frozen=True)
class Flight:
    """What a leader hands its waiters: the stored response, the Vary names it was stored under and
    the variant it is. A waiter whose own headers select another variant runs the handler itself."""

    response: CachedResponse
    names: tuple[str, ...]
    variant: str

    def serves(self, prints: Mapping[str, str]) -> bool:
        return not self.names or secondary(self.names, prints) == self.variant


class SingleFlight:
    """Leaders register a future per key; followers await it with a bound."""

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Flight | None]] = {}

    def join(self, key: str) -> asyncio.Future[Flight | None] | None:
        """The flight already running for `key`, or None after making the caller its leader."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight
        self._flights[key] = asyncio.get_running_loop().create_future()
        return None

    def lead(self, key: str) -> asyncio.Future[Flight | None] | None:
        """The caller's own flight for `key` after `join` made it the leader (for `land`)."""
        return self._flights.get(key)

    def land(self, key: str, result: Flight | None, own: asyncio.Future[Flight | None] | None = None) -> None:
        """The leader is done (or its response will not be shared: None): wake every follower.
        With `own`, only that flight lands (a leader that landed early never ends a later one)."""
        flight = self._flights.get(key) if own is None else own
        if flight is None:
            return
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(result)

    @staticmethod
    async def wait(flight: asyncio.Future[Flight | None], timeout: float) -> Flight | None:
        """The leader's result, or None when it was not shareable or took longer than `timeout`."""
        try:
            return await asyncio.wait_for(asyncio.shield(flight), timeout)
        except TimeoutError:
            return None

    def __len__(self) -> int:
        return len(self._flights)
