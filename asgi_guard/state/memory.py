"""Embedded in-process backend: O(1) operations, bounded memory, one clock for the process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from asgi_guard.state.base import Backend

_MISSING = object()


class ExpiringStore:
    """A bounded dict whose entries may carry an absolute expiry time.

    Expiry is lazy (checked on read) plus a sweep of the oldest entries on write, so every operation
    stays O(1) amortised; when `max_keys` is reached the least recently written entry goes.
    """

    __slots__ = ("_clock", "_data", "_max_keys", "_writes")

    def __init__(self, clock: Callable[[], float], max_keys: int) -> None:
        self._data: OrderedDict[Any, tuple[Any, float | None]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._writes = 0

    def get(self, key: Any, default: Any = None) -> Any:
        item = self._data.get(key)
        if item is None:
            return default
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return default
        return value

    def set(self, key: Any, value: Any, ttl: float | None = None) -> None:
        data = self._data
        if key in data:
            data.move_to_end(key)
        data[key] = (value, None if ttl is None else self._clock() + ttl)
        if len(data) > self._max_keys:
            data.popitem(last=False)
        self._writes += 1
        if not self._writes & 7:  # every 8th write drops up to 16 expired entries: O(1) amortised
            self._sweep(16)

    def pop(self, key: Any, default: Any = None) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        del self._data[key]
        return value

    def ttl(self, key: Any) -> float | None:
        item = self._data.get(key)
        if item is None or item[1] is None:
            return None
        return max(0.0, item[1] - self._clock())

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()

    def _sweep(self, budget: int) -> None:
        """Drop up to `budget` expired entries from the oldest end."""
        data, now = self._data, self._clock()
        for _ in range(budget):
            if not data:
                return
            key, (_, expires) = next(iter(data.items()))
            if expires is None or expires > now:
                return
            del data[key]


class MemoryBackend(Backend):
    """State shared by every request of this process (not across processes)."""

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._namespaces: dict[str, ExpiringStore] = {}

    def namespace(self, name: str) -> ExpiringStore:
        """The store a policy owns (one per concern, e.g. "rate_limit", "credits")."""
        store = self._namespaces.get(name)
        if store is None:
            store = self._namespaces[name] = ExpiringStore(self.clock, self.max_keys)
        return store

    async def ping(self) -> bool:
        return True

    async def now(self) -> float:
        return self.clock()
