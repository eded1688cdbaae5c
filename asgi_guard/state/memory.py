"""Embedded in-process backend: O(1) operations, bounded memory, one clock for the process."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from asgi_guard.core.errors import ConfigError
from asgi_guard.state.base import Backend
from asgi_guard.state.workers import alone_in_server, server_worker_count

log = logging.getLogger("asgi_guard.backend")

_MISSING = object()


class ExpiringStore:
    """A bounded dict whose entries may carry an absolute expiry time.

    Expiry is lazy (checked on read) plus a sweep of the oldest entries on write, so every operation
    stays O(1) amortised; when `max_keys` is reached the least recently written entry goes.

    With `max_per_owner`, an entry written with `owner=` (a principal: JWT subject or client IP)
    counts against that owner's quota, and an owner past it loses its own oldest entry, never
    another's: one client's flood of distinct keys cannot evict a second client's records. (Only
    when more than `max_keys / max_per_owner` owners are all full can the shared bound still evict.)
    """

    __slots__ = ("_clock", "_data", "_max_keys", "_max_per_owner", "_owner_of", "_owners", "_writes")

    def __init__(
        self, clock: Callable[[], float], max_keys: int, *, max_per_owner: int | None = None
    ) -> None:
        self._data: OrderedDict[Any, list[Any]] = OrderedDict()  # key -> [value, expires or None]
        self._max_keys = max_keys
        self._max_per_owner = max_per_owner
        self._owners: dict[Any, OrderedDict[Any, None]] = {}
        self._owner_of: dict[Any, Any] = {}
        self._clock = clock
        self._writes = 0

    def get(self, key: Any, default: Any = None) -> Any:
        item = self._data.get(key)
        if item is None:
            return default
        value, expires = item
        if expires is not None and expires <= self._clock():
            self._drop(key)
            return default
        return value

    def get_at(self, key: Any, now: float) -> Any:
        """`get(key)` (None when absent or expired) as of `now`, a reading of this store's clock the
        caller already took: a decision reads the clock once, not once per store call."""
        item = self._data.get(key)
        if item is None:
            return None
        expires = item[1]
        if expires is not None and expires <= now:
            self._drop(key)
            return None
        return item[0]

    def cells(self) -> tuple[Callable[[Any], list[Any] | None], Callable[[Any], None]]:
        """`(find, touch)`: the store's own entries, for a form that decides in a few operations
        (the rate limiter's hot path: no method call per read or write).

        `find(key)` is the entry `[value, expires]` (`expires` on this store's clock, or None), or
        None; an expired entry is returned too, so the caller compares `expires` with its own clock
        reading and treats it as absent. The caller may replace both items in place; it then calls
        `touch(key)`, which marks the entry as just written (the least recently written entry goes
        first when the store is full). An absent key is written with `set_until`.
        """
        return self._data.get, self._data.move_to_end

    def set(self, key: Any, value: Any, ttl: float | None = None, *, owner: Any = None) -> None:
        data = self._data
        if key in data:
            data.move_to_end(key)
        data[key] = [value, None if ttl is None else self._clock() + ttl]
        if owner is not None and self._max_per_owner is not None:
            self._own(key, owner, self._max_per_owner)
        if len(data) > self._max_keys:
            self._drop(next(iter(data)))
        self._writes += 1
        if not self._writes & 7:  # every 8th write drops up to 16 expired entries: O(1) amortised
            self._sweep(16)

    def set_until(self, key: Any, value: Any, expires: float | None) -> None:
        """`set(key, value)` until `expires`, an absolute time on this store's clock (no owner): for
        a caller that has read the clock already."""
        data = self._data
        data[key] = [value, expires]
        data.move_to_end(key)  # a no-op for a new key: cheaper than asking first
        if len(data) > self._max_keys:
            self._drop(next(iter(data)))
        self._writes += 1
        if not self._writes & 7:  # every 8th write drops up to 16 expired entries: O(1) amortised
            self._sweep(16)

    def _own(self, key: Any, owner: Any, quota: int) -> None:
        previous = self._owner_of.get(key)
        if previous is not None and previous != owner:
            self._disown(key)
        keys = self._owners.get(owner)
        if keys is None:
            keys = self._owners[owner] = OrderedDict()
        keys[key] = None
        keys.move_to_end(key)
        self._owner_of[key] = owner
        while len(keys) > quota:  # the owner's own oldest entry goes
            self._drop(next(iter(keys)))

    def owned(self, owner: Any) -> int:
        """How many live-or-unswept entries `owner` holds."""
        keys = self._owners.get(owner)
        return 0 if keys is None else len(keys)

    def _disown(self, key: Any) -> None:
        owner = self._owner_of.pop(key, None)
        if owner is not None:
            keys = self._owners[owner]
            del keys[key]
            if not keys:
                del self._owners[owner]

    def _drop(self, key: Any) -> None:
        del self._data[key]
        if self._owner_of:
            self._disown(key)

    def pop(self, key: Any, default: Any = None) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        self._drop(key)
        return value

    def ttl(self, key: Any) -> float | None:
        item = self._data.get(key)
        expires: float | None = None if item is None else item[1]
        if expires is None:
            return None
        return max(0.0, expires - self._clock())

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self._owners.clear()
        self._owner_of.clear()

    def _sweep(self, budget: int) -> None:
        """Drop up to `budget` expired entries from the oldest end."""
        data, now = self._data, self._clock()
        for _ in range(budget):
            if not data:
                return
            key, (_, expires) = next(iter(data.items()))
            if expires is None or expires > now:
                return
            self._drop(key)


class MemoryBackend(Backend):
    """State shared by every request of this process (not across processes)."""

    kind = "memory"

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_keys: int = 100_000,
        max_keys_per_owner: int = 1_000,
        *,
        multi_worker: Literal["warn", "error"] = "warn",
    ) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self.max_keys_per_owner = max_keys_per_owner
        self.multi_worker = multi_worker
        self._namespaces: dict[str, ExpiringStore] = {}
        self._checked = False

    async def start(self) -> None:
        """Report (or refuse) being one of several worker processes: state here is per process."""
        if self._checked:
            return
        self._checked = True
        alone = alone_in_server()
        workers = server_worker_count()
        if alone and (workers is None or workers <= 1):
            return
        message = (
            f"asgi-guard: the embedded backend is running in one of {workers or 'several'} worker "
            "processes; rate limits, credits, idempotency records and circuit breakers then hold per "
            "process (a limit of 3/min lets 3 per worker through). Set GuardSettings.valkey_url to "
            "share them, or run one worker (see docs/deployment-workers.md)"
        )
        if self.multi_worker == "error":
            raise ConfigError(message + "; refusing to start (multi_worker_embedded = 'error')")
        log.warning(message)

    def namespace(self, name: str, *, per_owner: bool = False) -> ExpiringStore:
        """The store a policy owns (one per concern, e.g. "rate_limit", "credits").

        `per_owner`: entries written with `owner=` are bounded per owner by `max_keys_per_owner`
        (idempotency records, cache entries: state a client creates at will)."""
        store = self._namespaces.get(name)
        if store is None:
            quota = self.max_keys_per_owner if per_owner else None
            store = self._namespaces[name] = ExpiringStore(self.clock, self.max_keys, max_per_owner=quota)
        return store

    async def ping(self) -> bool:
        return True

    async def now(self) -> float:
        return self.clock()
