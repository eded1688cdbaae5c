"""Eviction orders for the in-memory cache: which key goes when a namespace is full.

Each policy tracks keys only (the store holds values); every operation is O(1) except LFU's
`remove`, which rescans the distinct use counts when the rarest bucket empties.
"""

from __future__ import annotations

from collections import OrderedDict


class EvictionPolicy:
    """Insertion order; subclasses say what a hit does and which end is evicted."""

    __slots__ = ("_order",)
    evict_newest = False
    hit_moves = False

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()

    def stored(self, key: str) -> None:
        """`key` was written (new, or rewritten: a rewrite counts as the newest write/use)."""
        self._order[key] = None
        self._order.move_to_end(key)

    def hit(self, key: str) -> None:
        if self.hit_moves:
            self._order.move_to_end(key)

    def remove(self, key: str) -> None:
        self._order.pop(key, None)

    def victim(self) -> str | None:
        """The key to evict next (None when empty)."""
        if not self._order:
            return None
        return next(reversed(self._order)) if self.evict_newest else next(iter(self._order))

    def __len__(self) -> int:
        return len(self._order)


class FIFOPolicy(EvictionPolicy):
    """First in, first out: the oldest write goes; hits change nothing."""


class LIFOPolicy(EvictionPolicy):
    """Last in, first out: the newest write goes; hits change nothing."""

    evict_newest = True


class LRUPolicy(EvictionPolicy):
    """Least recently used (written or hit) goes."""

    hit_moves = True


class MRUPolicy(EvictionPolicy):
    """Most recently used (written or hit) goes."""

    hit_moves = True
    evict_newest = True


class LFUPolicy(EvictionPolicy):
    """Least frequently used goes; among equals, the least recently used. A write counts as a use."""

    __slots__ = ("_buckets", "_counts", "_min")
    _CAP = 1_048_575  # same saturation as the Valkey form

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, int] = {}
        self._buckets: dict[int, OrderedDict[str, None]] = {}
        self._min = 0

    def stored(self, key: str) -> None:
        self._use(key)

    def hit(self, key: str) -> None:
        if key in self._counts:
            self._use(key)

    def _use(self, key: str) -> None:
        old = self._counts.get(key, 0)
        new = min(old + 1, self._CAP)
        if old:
            self._buckets[old].pop(key, None)
            if not self._buckets[old]:
                del self._buckets[old]
        self._counts[key] = new
        bucket = self._buckets.get(new)
        if bucket is None:
            bucket = self._buckets[new] = OrderedDict()
        bucket[key] = None
        bucket.move_to_end(key)
        if old == 0:
            self._min = 1
        elif old == self._min and old not in self._buckets:
            self._min = new

    def remove(self, key: str) -> None:
        count = self._counts.pop(key, 0)
        if not count:
            return
        bucket = self._buckets[count]
        bucket.pop(key, None)
        if not bucket:
            del self._buckets[count]
            if count == self._min:
                self._min = min(self._buckets, default=0)

    def victim(self) -> str | None:
        bucket = self._buckets.get(self._min)
        if not bucket:
            return None
        return next(iter(bucket))

    def __len__(self) -> int:
        return len(self._counts)


POLICIES: dict[str, type[EvictionPolicy]] = {
    "fifo": FIFOPolicy,
    "lifo": LIFOPolicy,
    "lru": LRUPolicy,
    "mru": MRUPolicy,
    "lfu": LFUPolicy,
}
