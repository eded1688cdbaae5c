"""The reference form against the pinned meanings (DESIGN.md "Policy meanings"), by hypothesis.

The backends are held to the reference elsewhere (test_rl_properties.py); here the reference is held
to the meaning: what it admits never breaks the policy, and it never refuses what the policy allows.
"""

from __future__ import annotations

import math
from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_guard.stages.rate_limit import LimitSpec, ReferenceLimiter
from asgi_guard.stages.rate_limit.spec import (
    DEBOUNCE,
    FIXED_WINDOW,
    SLIDING_APPROX,
    SLIDING_EXACT,
    THROTTLE,
    TOKEN_BUCKET,
)

T0 = 1_700_000_000.0
gaps = st.lists(
    st.one_of(st.just(0.0), st.sampled_from([0.1, 0.5, 1.0]), st.floats(0, 4)), min_size=1, max_size=60
)
CHECK = settings(max_examples=150, deadline=None)


def run(spec: LimitSpec, deltas: list[float]) -> tuple[list[float], list[bool]]:
    limiter = ReferenceLimiter([spec])
    times = [T0 + t for t in accumulate(deltas)]
    return times, [limiter.check("k", now)[0].allowed for now in times]


@CHECK
@given(limit=st.integers(1, 5), window=st.integers(1, 5), deltas=gaps)
def test_sliding_exact_is_exactly_limit_in_any_window(limit: int, window: int, deltas: list[float]) -> None:
    times, allowed = run(LimitSpec("s", SLIDING_EXACT, limit, window), deltas)
    accepted: list[float] = []
    for now, ok in zip(times, allowed, strict=True):
        in_window = sum(1 for t in accepted if t > now - window)
        assert ok == (in_window < limit)  # admits exactly when fewer than `limit` in (now-window, now]
        if ok:
            accepted.append(now)


@CHECK
@given(limit=st.integers(1, 5), window=st.integers(1, 5), deltas=gaps)
def test_fixed_window_is_exactly_limit_per_aligned_window(
    limit: int, window: int, deltas: list[float]
) -> None:
    times, allowed = run(LimitSpec("f", FIXED_WINDOW, limit, window), deltas)
    counts: dict[int, int] = {}
    for now, ok in zip(times, allowed, strict=True):
        idx = math.floor(now / window)
        assert ok == (counts.get(idx, 0) < limit)
        if ok:
            counts[idx] = counts.get(idx, 0) + 1


@CHECK
@given(cap=st.integers(1, 5), rate=st.sampled_from([0.5, 1.0, 2.0]), deltas=gaps)
def test_token_bucket_never_exceeds_capacity_plus_refill(cap: int, rate: float, deltas: list[float]) -> None:
    times, allowed = run(LimitSpec("t", TOKEN_BUCKET, cap, rate, 60), deltas)
    accepted = [t for t, ok in zip(times, allowed, strict=True) if ok]
    for i, start in enumerate(accepted):
        for j in range(i, len(accepted)):
            assert j - i + 1 <= cap + (accepted[j] - start) * rate + 1e-9
    assert allowed[0]  # starts full


@CHECK
@given(interval=st.sampled_from([0.5, 1.0, 2.0]), deltas=gaps)
def test_throttle_spaces_accepted_requests(interval: float, deltas: list[float]) -> None:
    times, allowed = run(LimitSpec("t", THROTTLE, interval), deltas)
    last = None
    for now, ok in zip(times, allowed, strict=True):
        assert ok == (last is None or now - last >= interval)
        if ok:
            last = now


@CHECK
@given(limit=st.integers(1, 5), window=st.integers(1, 5), deltas=gaps)
def test_sliding_approximate_stays_within_its_documented_bound(
    limit: int, window: int, deltas: list[float]
) -> None:
    times, allowed = run(LimitSpec("a", SLIDING_APPROX, limit, window), deltas)
    accepted = [t for t, ok in zip(times, allowed, strict=True) if ok]
    for now in times:
        assert sum(1 for t in accepted if now - window < t <= now) <= 2 * limit
    assert allowed[0]


any_spec = st.one_of(
    st.builds(
        lambda c, r: LimitSpec("x", TOKEN_BUCKET, c, r, 60), st.integers(1, 4), st.sampled_from([0.5, 2.0])
    ),
    st.builds(lambda n, w: LimitSpec("x", FIXED_WINDOW, n, w), st.integers(1, 4), st.integers(1, 4)),
    st.builds(lambda n, w: LimitSpec("x", SLIDING_EXACT, n, w), st.integers(1, 4), st.integers(1, 4)),
    st.builds(lambda n, w: LimitSpec("x", SLIDING_APPROX, n, w), st.integers(1, 4), st.integers(1, 4)),
    st.builds(lambda i: LimitSpec("x", THROTTLE, i), st.sampled_from([0.5, 1.5])),
    st.builds(lambda i: LimitSpec("x", DEBOUNCE, i), st.sampled_from([0.5, 1.5])),
)


@CHECK
@given(spec=any_spec, deltas=gaps)
def test_retry_after_is_honest(spec: LimitSpec, deltas: list[float]) -> None:
    """A rejected client that waits `retry_after` (and sends nothing meanwhile) gets in."""
    limiter = ReferenceLimiter([spec])
    now = T0
    for delta in deltas:
        now += delta
        decision = limiter.check("k", now)[0]
        if not decision.allowed:
            assert decision.retry_after > 0
            probe = ReferenceLimiter([spec])
            probe.states = dict(limiter.states)
            assert probe.check("k", now + decision.retry_after + 1e-6)[0].allowed
