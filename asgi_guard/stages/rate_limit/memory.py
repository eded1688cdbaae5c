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


_new_tuple = tuple.__new__  # a Decision straight from its fields: a third of NamedTuple's __new__


def _fixed_window(store: ExpiringStore, key: str, spec: LimitSpec, now: float, cost: int) -> Decision:
    """`reference.fixed_window` over the store, in one call (the hot path: no step tuple)."""
    limit, window = spec.a, spec.b
    state = store.get_at(key, now)
    idx = math.floor(now / window)
    count = state[1] if state is not None and state[0] == idx else 0
    reset = (idx + 1) * window - now
    if count + cost <= limit:
        store.set_until(key, (idx, count + cost), now + (reset + GC_SLACK))
        return _new_tuple(Decision, (True, int(limit - count - cost), reset, 0.0))  # type: ignore[no-any-return]
    return _new_tuple(Decision, (False, int(limit - count), reset, reset))  # type: ignore[no-any-return]


def _token_bucket(store: ExpiringStore, key: str, spec: LimitSpec, now: float, cost: int) -> Decision:
    """`reference.token_bucket` over the store, in one call (the hot path: no step tuple)."""
    cap, rate = spec.a, spec.b
    state = store.get_at(key, now)
    if state is None:
        tokens, ts = cap, now
    else:
        tokens, ts = state
    elapsed = now - ts
    if elapsed < 0:
        elapsed = 0.0
    tokens = min(cap, tokens + elapsed * rate)
    if tokens >= cost:
        left = tokens - cost
        remaining = math.floor(left)
        store.set_until(key, (left, now), now + (spec.c + GC_SLACK))
        return _new_tuple(Decision, (True, remaining, (remaining + 1 - left) / rate, 0.0))  # type: ignore[no-any-return]
    wait = (cost - tokens) / rate
    return _new_tuple(Decision, (False, math.floor(tokens), wait, wait))  # type: ignore[no-any-return]


Direct = Callable[[ExpiringStore, str, LimitSpec, float, int], Decision]
# one-limit routes of these algorithms decide in one function (property-tested against the reference)
DIRECT: dict[str, Direct] = {FIXED_WINDOW: _fixed_window, TOKEN_BUCKET: _token_bucket}


class MemoryRateLimiter:
    """One route's limits on the embedded store; `check(identity)` decides one request."""

    __slots__ = ("_clock", "_direct", "_plan", "_single", "_store", "suffix")

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
        # the state key of a one-limit route is `identity + suffix` (see `check_key`)
        self.suffix = self._plan[0][2]
        self._direct = DIRECT.get(specs[0].code) if self._single else None

    def check_one(self, identity: str, cost: int = 1) -> Decision:
        """The common case, a route with one limit: no bookkeeping."""
        return self.check_key(identity + self.suffix, cost)

    def check_key(self, key: str, cost: int = 1) -> Decision:
        """`check_one` by the limit's state key (`identity + self.suffix`), for a caller that keeps
        keys; one clock reading per decision."""
        spec, step, _, _ = self._plan[0]
        store = self._store
        now = self._clock()
        direct = self._direct
        if direct is not None:
            return direct(store, key, spec, now, cost)
        decision, new, ttl = step(spec, store.get_at(key, now), now, cost)
        if new is not None:
            store.set_until(key, new.apply() if type(new) is _Append else new, now + (ttl + GC_SLACK))
        return decision  # type: ignore[no-any-return]

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
