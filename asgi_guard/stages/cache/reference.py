"""Eviction and expiry of one cache namespace as a pure, clock-injected model (what memory.py and the
two cache scripts must do; tests/cache/test_cache_properties.py).

A namespace holds at most `capacity` entries, each living `ttl` seconds from its write (gone once
`expires <= now`). Expired entries never count against the capacity. Storing a new key into a full
namespace evicts, one at a time, the victim of `algo`; rewriting a present key evicts nothing.
Every write and every hit is a use, numbered in order:

- fifo: the oldest write goes (hits change nothing); lifo: the newest write goes;
- lru: the least recently used goes; mru: the most recently used goes;
- lfu: the fewest uses goes (writes count, a rewrite adds one), ties to the least recently used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALGOS = ("fifo", "lifo", "lru", "mru", "lfu")


@dataclass(slots=True)
class _Entry:
    value: Any
    stored_at: float
    expires: float
    written: int  # sequence number of its last write
    used: int  # sequence number of its last use (write or hit)
    uses: int


@dataclass
class ReferenceCache:
    algo: str
    capacity: int
    ttl: float
    entries: dict[str, _Entry] = field(default_factory=dict)
    seq: int = 0

    def _tick(self) -> int:
        self.seq += 1
        return self.seq

    def get(self, key: str, now: float) -> tuple[Any, float, float] | None:
        """(value, age, seconds left) on a hit, else None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self.entries[key]
            return None
        if self.algo in ("lru", "mru", "lfu"):
            entry.used, entry.uses = self._tick(), entry.uses + 1
        return entry.value, max(0.0, now - entry.stored_at), entry.expires - now

    def _rank(self, entry: _Entry) -> tuple[int, ...]:
        """Smaller goes first."""
        if self.algo == "fifo":
            return (entry.written,)
        if self.algo == "lifo":
            return (-entry.written,)
        if self.algo == "lru":
            return (entry.used,)
        if self.algo == "mru":
            return (-entry.used,)
        return (entry.uses, entry.used)

    def set(self, key: str, value: Any, now: float) -> list[str]:
        """Store; the keys evicted to make room, first evicted first."""
        for name in [k for k, e in self.entries.items() if e.expires <= now]:
            del self.entries[name]
        evicted: list[str] = []
        if key not in self.entries:
            while self.entries and len(self.entries) >= self.capacity:
                victim = min(self.entries, key=lambda k: self._rank(self.entries[k]))
                del self.entries[victim]
                evicted.append(victim)
        old = self.entries.get(key)
        seq = self._tick()
        uses = old.uses + 1 if old is not None else 1
        self.entries[key] = _Entry(value, now, now + self.ttl, seq, seq, uses)
        return evicted
