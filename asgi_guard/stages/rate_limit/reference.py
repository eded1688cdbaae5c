"""The pure, clock-injected reference form of each algorithm: the meaning the backends must match.

Each step reads a limit's previous state (None when there is none) and `now`, and returns the
decision, the state to store if the request is admitted (debounce: always), and how long that state
matters (seconds; backends use it only to collect garbage, never to decide). The arithmetic order
here is mirrored in rate_limit.lua so both give bit-identical answers.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from asgi_guard.stages.rate_limit.spec import (
    DEBOUNCE,
    FIXED_WINDOW,
    SLIDING_APPROX,
    SLIDING_EXACT,
    THROTTLE,
    TOKEN_BUCKET,
    Decision,
    LimitSpec,
)

Step = tuple[Decision, Any, float]

# Every step takes the request's `cost` (a whole number of units, >= 0; 1 by default). Token bucket and
# the windows take it all or nothing: a request whose cost exceeds what is left is refused and consumes
# nothing, and its decision's `remaining` says what is left (so a cheaper request may still pass).
# Throttle and debounce count requests, so they ignore it (their unit is "a request").


def token_bucket(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """Capacity `a`, refill `b` tokens/s, starts full; `cost` tokens per request."""
    cap, rate = spec.a, spec.b
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
        return Decision(True, remaining, (remaining + 1 - left) / rate, 0.0), (left, now), spec.c
    wait = (cost - tokens) / rate
    return Decision(False, math.floor(tokens), wait, wait), None, spec.c


def fixed_window(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """At most `a` units per `b`-second window aligned to multiples of `b` since the epoch."""
    limit, window = spec.a, spec.b
    idx = math.floor(now / window)
    count = state[1] if state is not None and state[0] == idx else 0
    reset = (idx + 1) * window - now
    if count + cost <= limit:
        return Decision(True, int(limit - count - cost), reset, 0.0), (idx, count + cost), reset
    return Decision(False, int(limit - count), reset, reset), None, reset


def sliding_exact(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """At most `a` units in the `b` seconds ending now (a log of accepted timestamps, one per unit)."""
    limit, window = spec.a, spec.b
    low = now - window
    log = [t for t in state if t > low] if state else []
    count = len(log)
    if count + cost <= limit:
        for _ in range(cost):
            insort(log, now)
        first = log[0] if log else now
        return Decision(True, int(limit - count - cost), first + window - now, 0.0), tuple(log), window
    first = log[0] if log else now
    rank = count + cost - int(limit) - 1  # the unit whose expiry makes room for `cost`
    retry = log[rank] + window - now if rank < count else window  # cost > limit: never (a hint)
    return Decision(False, max(0, int(limit) - count), first + window - now, retry), None, window


def sliding_approx(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """Two-window weighted counter: previous window's count weighted by the part still in range."""
    limit, window = spec.a, spec.b
    idx = math.floor(now / window)
    current = previous = 0
    if state is not None:
        w0, c0, p0 = state
        if w0 == idx:
            current, previous = c0, p0
        elif w0 == idx - 1:
            previous = c0
    frac = (now - idx * window) / window
    estimate = previous * (1 - frac) + current
    reset = (idx + 1) * window - now
    keep = (idx + 2) * window - now
    room = limit - cost
    if estimate <= room:
        remaining = math.floor(room - estimate)
        return Decision(True, remaining, reset, 0.0), (idx, current + cost, previous), keep
    if room < 0:  # cost > limit: never admitted (the retry is only a hint)
        retry = keep
    elif current <= room:
        retry = idx * window + (1 - (room - current) / previous) * window - now
    else:
        retry = (idx + 1) * window + (1 - room / current) * window - now
    return Decision(False, max(0, math.floor(limit - estimate)), reset, retry), None, keep


def throttle(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """At most one accepted request per `a` seconds, measured from the last accepted one."""
    interval = spec.a
    if state is None or now - state >= interval:
        return Decision(True, 0, interval, 0.0), now, interval
    wait = state + interval - now
    return Decision(False, 0, wait, wait), None, interval


def debounce(spec: LimitSpec, state: Any, now: float, cost: int = 1) -> Step:
    """Rejected while the previous attempt was under `a` seconds ago; every attempt restarts it."""
    interval = spec.a
    if state is None or now - state >= interval:
        return Decision(True, 0, interval, 0.0), now, interval
    return Decision(False, 0, interval, interval), now, interval


STEPS: dict[str, Callable[[LimitSpec, Any, float, int], Step]] = {
    TOKEN_BUCKET: token_bucket,
    FIXED_WINDOW: fixed_window,
    SLIDING_EXACT: sliding_exact,
    SLIDING_APPROX: sliding_approx,
    THROTTLE: throttle,
    DEBOUNCE: debounce,
}
ALWAYS_RECORDED = frozenset({DEBOUNCE})
WEIGHTED = frozenset({TOKEN_BUCKET, FIXED_WINDOW, SLIDING_EXACT, SLIDING_APPROX})  # take a cost


class ReferenceLimiter:
    """A route's limits over a plain dict: all must pass; a rejected request consumes none of them
    (debounce still records the attempt, as its meaning says)."""

    def __init__(self, specs: Sequence[LimitSpec]) -> None:
        self.specs = tuple(specs)
        self.states: dict[Hashable, Any] = {}

    def check(self, identity: str, now: float, cost: int = 1) -> list[Decision]:
        states = self.states
        steps = [STEPS[s.code](s, states.get((identity, s.name)), now, cost) for s in self.specs]
        admitted = all(step[0].allowed for step in steps)
        for spec, (_, new, _) in zip(self.specs, steps, strict=True):
            if new is not None and (admitted or spec.code in ALWAYS_RECORDED):
                states[(identity, spec.name)] = new
        return [step[0] for step in steps]
