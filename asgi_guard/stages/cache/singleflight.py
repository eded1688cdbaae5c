"""Single flight: concurrent misses on one key wait for the first one's response (per process)."""

from __future__ import annotations

import asyncio

from asgi_guard.core.http import CachedResponse


class SingleFlight:
    """Leaders register a future per key; followers await it with a bound."""

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[CachedResponse | None]] = {}

    def join(self, key: str) -> asyncio.Future[CachedResponse | None] | None:
        """The flight already running for `key`, or None after making the caller its leader."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight
        self._flights[key] = asyncio.get_running_loop().create_future()
        return None

    def land(self, key: str, response: CachedResponse | None) -> None:
        """The leader is done: hand `response` (None = not shareable) to every follower."""
        flight = self._flights.pop(key, None)
        if flight is not None and not flight.done():
            flight.set_result(response)

    @staticmethod
    async def wait(flight: asyncio.Future[CachedResponse | None], timeout: float) -> CachedResponse | None:
        """The leader's response, or None when it was not shareable or took longer than `timeout`."""
        try:
            return await asyncio.wait_for(asyncio.shield(flight), timeout)
        except TimeoutError:
            return None

    def __len__(self) -> int:
        return len(self._flights)
