"""Eviction and expiry of one cache namespace as a pure, clock-injected model (what memory.py and the
two cache scripts must do; tests/cache/test_cache_properties.py).

A namespace holds at most `capacity` entries, each living `ttl` seconds from its write (gone once
`expires <= now`). Expired entries never count against the capacity. Storing a new key into a full
namespace evicts, one at a time, the victim of `algo`; rewriting a present key evicts nothing.
Every write and every hit is a use, numbered in order:

- fifo: the oldest write goes (hits change nothing); lifo: the newest write goes;
- lru: the least recently used goes; mru: the most recently used goes;
- lfu: the fewest uses goes (writes count, a rewrite adds one), ties to the least recently used.

Owners (the embedded store's per-client bound): every entry belongs to the owner whose write
created it (a rewrite keeps it; entries written without one share the owner None). The victim is
always one owner's own victim by `algo` among its own entries, and the owner is:
- the writer, when it already holds `quota` entries (no owner ever holds more);
- else, when the namespace is full: the writer when it holds as many entries as any owner, else
  the owner holding the most, the one that came to hold that many first.
With a single owner (None everywhere) this is the plain namespace above.
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
    owner: Any = None


@dataclass
class ReferenceCache:
    algo: str
    capacity: int
    ttl: float
    quota: int | None = None  # entries one owner may hold (None: no bound of its own)
    entries: dict[str, _Entry] = field(default_factory=dict)
    seq: int = 0
    moves: int = 0  # numbers the changes of owners' entry counts
    arrived: dict[Any, int] = field(default_factory=dict)  # owner -> its count's last change

    def _tick(self) -> int:
        self.seq += 1
        return self.seq

    def _drop(self, key: str) -> None:
        owner = self.entries.pop(key).owner
        self.moves += 1
        self.arrived[owner] = self.moves

    def get(self, key: str, now: float) -> tuple[Any, float, float] | None:
        """(value, age, seconds left) on a hit, else None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self._drop(key)
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

    def _pool(self, writer: Any) -> Any:
        """Whose entry goes next when `writer` stores a new key (`_ROOM`: nobody's, there is room)."""
        held: dict[Any, int] = {}
        for entry in self.entries.values():
            held[entry.owner] = held.get(entry.owner, 0) + 1
        mine = held.get(writer, 0)
        if self.quota is not None and mine >= self.quota:
            return writer
        if not self.entries or len(self.entries) < self.capacity:
            return _ROOM
        most = max(held.values())
        if mine >= most:
            return writer
        return min((o for o, n in held.items() if n == most), key=lambda o: self.arrived[o])

    def set(self, key: str, value: Any, now: float, owner: Any = None) -> list[str]:
        """Store; the keys evicted to make room, first evicted first."""
        expired = [k for k, e in self.entries.items() if e.expires <= now]
        for name in sorted(expired, key=lambda k: self.entries[k].written):
            self._drop(name)
        evicted: list[str] = []
        if key not in self.entries:
            while (pool := self._pool(owner)) is not _ROOM:
                victim = min(
                    (k for k, e in self.entries.items() if e.owner == pool),
                    key=lambda k: self._rank(self.entries[k]),
                )
                self._drop(victim)
                evicted.append(victim)
            self.moves += 1
            self.arrived[owner] = self.moves
        old = self.entries.get(key)
        seq = self._tick()
        uses = old.uses + 1 if old is not None else 1
        kept = old.owner if old is not None else owner
        self.entries[key] = _Entry(value, now, now + self.ttl, seq, seq, uses, kept)
        return evicted


_ROOM: Any = object()  # _pool's answer when nothing need go
