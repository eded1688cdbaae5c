"""Memory form: the algorithms over `MemoryBackend.namespace("rate_limit")`.

Exact within one process (the event loop runs a decision without yielding, so it is atomic).
Entries expire a little after they stop mattering, which bounds memory and never changes an answer.
Most algorithms reuse the reference steps (their states are a few numbers); the exact sliding window
keeps a mutable deque instead of copying its log, so a request costs O(1) amortised, not O(limit).
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from asgi_guard.stages.rate_limit.reference import ALWAYS_RECORDED, STEPS, Step
from asgi_guard.stages.rate_limit.spec import FIXED_WINDOW, SLIDING_EXACT, TOKEN_BUCKET, Decision, LimitSpec
from asgi_guard.state.memory import ExpiringStore

GC_SLACK = 1.0  # seconds kept past the point where a state stops mattering


class _Append:
    """A deferred write: add `now` (`cost` times) to the log only if every limit admits the request."""

    __slots__ = ("cost", "log", "now")

    def __init__(self, log: deque[float], now: float, cost: int) -> None:
        self.log, self.now, self.cost = log, now, cost

    def apply(self) -> deque[float]:
        log, now = self.log, self.now
        for _ in range(self.cost):
            if not log or log[-1] <= now:
                log.append(now)
            else:  # the clock stepped back: keep the log sorted
                insort(log, now)
        return log


def sliding_exact_inplace(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """The reference's exact sliding window over a deque pruned from the left (same answers)."""
    limit, window = spec.a, spec.b
    log: deque[float] = deque() if state is None else state
    low = now - window
    while log and log[0] <= low:
        log.popleft()  # garbage only: these can never count again
    count = len(log)
    if count + cost <= limit:
        # the oldest unit after this request: `now` joins the log unless the cost is 0
        first = log[0] if log and (log[0] < now or not cost) else now
        remaining = int(limit - count - cost)
        return Decision(True, remaining, first + window - now, 0.0), _Append(log, now, cost), window
    oldest = log[0] if log else now
    rank = count + cost - int(limit) - 1
    retry = log[rank] + window - now if rank < count else window
    return Decision(False, max(0, int(limit) - count), oldest + window - now, retry), None, window


_new_tuple = tuple.__new__
Verdict = tuple[
    bool, int, float, float
]  # a Decision's fields as a plain tuple: (allowed, remaining, reset, retry_after)
KeyCheck = Callable[[str, int], Verdict]


def _fixed_window(store: ExpiringStore, clock: Callable[[], float], spec: LimitSpec) -> KeyCheck:
    """`reference.fixed_window` over the store's cells as one closure (the hot path: no step
    tuple, no Decision, no method call but the clock's; the spec's numbers in locals)."""
    limit, window = spec.a, spec.b
    find, touch = store.cells()
    set_until, floor = store.set_until, math.floor

    def check(key: str, cost: int) -> Verdict:
        now = clock()
        idx = floor(now / window)
        reset = (idx + 1) * window - now
        cell = find(key)
        if cell is None or (cell[1] is not None and cell[1] <= now):  # absent or expired
            if cost <= limit:
                set_until(key, (idx, cost), now + (reset + GC_SLACK))
                return True, int(limit - cost), reset, 0.0
            return False, int(limit), reset, reset
        state = cell[0]
        count = state[1] if state[0] == idx else 0
        if count + cost <= limit:
            cell[0], cell[1] = (idx, count + cost), now + (reset + GC_SLACK)
            touch(key)
            return True, int(limit - count - cost), reset, 0.0
        return False, int(limit - count), reset, reset

    return check


def _token_bucket(store: ExpiringStore, clock: Callable[[], float], spec: LimitSpec) -> KeyCheck:
    """`reference.token_bucket` over the store's cells as one closure (see `_fixed_window`)."""
    cap, rate, keep = spec.a, spec.b, spec.c + GC_SLACK
    find, touch = store.cells()
    set_until, floor = store.set_until, math.floor

    def check(key: str, cost: int) -> Verdict:
        now = clock()
        cell = find(key)
        if cell is None or (cell[1] is not None and cell[1] <= now):  # absent or expired: full
            cell, tokens = None, cap
        else:
            tokens, ts = cell[0]
            elapsed = now - ts
            if elapsed < 0:
                elapsed = 0.0
            tokens = min(cap, tokens + elapsed * rate)
        if tokens >= cost:
            left = tokens - cost
            remaining = floor(left)
            if cell is None:
                set_until(key, (left, now), now + keep)
            else:
                cell[0], cell[1] = (left, now), now + keep
                touch(key)
            return True, remaining, (remaining + 1 - left) / rate, 0.0
        wait = (cost - tokens) / rate
        return False, floor(tokens), wait, wait

    return check


def _by_step(store: ExpiringStore, clock: Callable[[], float], spec: LimitSpec) -> KeyCheck:
    """Any algorithm, by its step function (the reference's, or the in-place sliding log)."""
    step = sliding_exact_inplace if spec.code == SLIDING_EXACT else STEPS[spec.code]
    get_at, set_until = store.get_at, store.set_until

    def check(key: str, cost: int) -> Verdict:
        now = clock()
        decision, new, ttl = step(spec, get_at(key, now), now, cost)
        if new is not None:
            set_until(key, new.apply() if type(new) is _Append else new, now + (ttl + GC_SLACK))
        return decision

    return check


# one-limit routes of these algorithms decide in a closure of their own (property-tested against the
# reference through `check`, like every form)
DIRECT: dict[str, Callable[[ExpiringStore, Callable[[], float], LimitSpec], KeyCheck]] = {
    FIXED_WINDOW: _fixed_window,
    TOKEN_BUCKET: _token_bucket,
}


class MemoryRateLimiter:
    """One route's limits on the embedded store; `check(identity)` decides one request."""

    __slots__ = ("_clock", "_plan", "_single", "_store", "check_key", "suffix")

    def __init__(self, store: ExpiringStore, clock: Callable[[], float], specs: Sequence[LimitSpec]) -> None:
        self._store = store
        self._clock = clock
        # (spec, step, key suffix, records even when rejected)
        self._plan = tuple(
            (
                spec,
                sliding_exact_inplace if spec.code == SLIDING_EXACT else STEPS[spec.code],
                f"\x1f{spec.name}\x1f{spec.code}",
                spec.code in ALWAYS_RECORDED,
            )
            for spec in specs
        )
        self._single = len(self._plan) == 1
        # The first limit decided by its state key (`identity + suffix`), as a plain
        # `(allowed, remaining, reset, retry_after)`: for a one-limit route's hot path, whose caller
        # keeps keys. One clock reading per decision.
        self.suffix = self._plan[0][2]
        self.check_key: KeyCheck = DIRECT.get(specs[0].code, _by_step)(store, clock, specs[0])

    def check_one(self, identity: str, cost: int = 1) -> Decision:
        """The common case, a route with one limit: no bookkeeping."""
        return _new_tuple(Decision, self.check_key(identity + self.suffix, cost))

    async def decide(self, identity: str, cost: int = 1) -> list[Decision]:
        """`check`, as the store contract's coroutine."""
        return self.check(identity, cost)

    def check(self, identity: str, cost: int = 1) -> list[Decision]:
        """Every limit: all must pass; a rejected request consumes none (debounce still records)."""
        if self._single:
            return [self.check_one(identity, cost)]
        store, now = self._store, self._clock()
        results = []
        admitted = True
        for spec, step, suffix, _ in self._plan:
            key = identity + suffix
            result = step(spec, store.get_at(key, now), now, cost)
            admitted = admitted and result[0].allowed
            results.append((key, result))
        for (_, _, _, always), (key, (_, new, ttl)) in zip(self._plan, results, strict=True):
            if new is not None and (admitted or always):
                store.set_until(key, new.apply() if type(new) is _Append else new, now + (ttl + GC_SLACK))
        return [result[0] for _, result in results]
