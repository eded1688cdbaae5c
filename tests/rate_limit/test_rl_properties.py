"""Hypothesis: random arrival sequences through every algorithm, memory and Valkey (standalone and
the 3-node cluster) against the reference.

The clock is injected: the memory backend gets a fake clock; the Valkey script gets `now` as an
argument (its test-only mode; production passes "" and the script reads the server's TIME). The
arithmetic is mirrored step for step, so answers match exactly; reset/retry are compared with a
1e-9 s tolerance only to be robust to float formatting, and `allowed`/`remaining` exactly.
Valkey keys get a long garbage-collection slack here so real time passing never expires a fake-time
state; the memory form keeps its production slack, so the property also shows that expiry never
changes an answer.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.stages.rate_limit import (
    Decision,
    LimitSpec,
    MemoryRateLimiter,
    ReferenceLimiter,
    ValkeyRateLimiter,
    spec_from_sections,
)
from asgi_guard.stages.rate_limit.config import LimitConfig
from asgi_guard.state import MemoryBackend, ValkeyBackend

T0 = 1_750_000_000.0
EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MEMORY_EXAMPLES = settings(max_examples=200, deadline=None)

small_float = st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0])
token_bucket = st.builds(
    lambda cap, rate, window: {
        "algo": "token_bucket",
        "token_bucket": {"rate_limit": cap, "refill_rate": rate, "rate_window": window},
    },
    st.integers(1, 5),
    small_float,
    st.integers(1, 10),
)
fixed_window = st.builds(
    lambda limit, window: {"algo": "fixed_window", "fixed_window": {"limit": limit, "window": window}},
    st.integers(1, 4),
    st.integers(1, 5),
)
sliding_window = st.builds(
    lambda limit, window, precision: {
        "algo": "sliding_window",
        "sliding_window": {"limit": limit, "window": window, "precision": precision},
    },
    st.integers(1, 4),
    st.integers(1, 5),
    st.sampled_from(["exact", "approximate"]),
)
throttle = st.builds(lambda i: {"algo": "throttle", "throttle": {"interval": i}}, small_float)
debounce = st.builds(lambda i: {"algo": "debounce", "debounce": {"interval": i}}, small_float)
any_limit = st.one_of(token_bucket, fixed_window, sliding_window, throttle, debounce)

# gaps between arrivals: bursts (0), window edges (whole seconds), and arbitrary fractions
gap = st.one_of(
    st.just(0.0),
    st.sampled_from([0.001, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]),
    st.floats(0.0, 6.0, allow_nan=False, allow_infinity=False),
)
arrivals = st.lists(gap, min_size=1, max_size=30)
start = st.one_of(st.just(T0), st.floats(T0, T0 + 100.0, allow_nan=False))


def compile_specs(limits: list[dict[str, object]]) -> list[LimitSpec]:
    return [spec_from_sections(LimitConfig(name=f"p{i}", **limit)) for i, limit in enumerate(limits)]  # type: ignore[arg-type]


def same(got: list[Decision], want: list[Decision]) -> bool:
    return all(
        g.allowed == w.allowed
        and g.remaining == w.remaining
        and math.isclose(g.reset, w.reset, rel_tol=0, abs_tol=1e-9)
        and math.isclose(g.retry_after, w.retry_after, rel_tol=0, abs_tol=1e-9)
        for g, w in zip(got, want, strict=True)
    )


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_memory(specs: list[LimitSpec], t0: float, gaps: list[float]) -> None:
    clock = FakeClock(t0)
    backend = MemoryBackend(clock=clock)
    memory = MemoryRateLimiter(backend.namespace("rate_limit"), clock, specs)
    reference = ReferenceLimiter(specs)
    for step, delta in enumerate(gaps):
        clock.now += delta
        want = reference.check("who", clock.now)
        got = memory.check("who")
        assert same(got, want), (step, clock.now, got, want)


@pytest.fixture(scope="module", params=["valkey_url", "valkey_cluster_url"], ids=["standalone", "cluster"])
def loop_and_valkey(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[asyncio.AbstractEventLoop, ValkeyBackend]]:
    loop = asyncio.new_event_loop()
    url = request.getfixturevalue(request.param)
    # a generous time-out: these tests are about answers, and the shared machine may be busy
    pooling = PoolingConfig(socket_timeout=5.0)
    backend = ValkeyBackend(url, pooling, key_prefix="prop" + uuid.uuid4().hex[:8])
    yield loop, backend
    loop.run_until_complete(backend.close())
    loop.close()


def run_valkey(
    loop_and_valkey: tuple[asyncio.AbstractEventLoop, ValkeyBackend],
    specs: list[LimitSpec],
    t0: float,
    gaps: list[float],
) -> None:
    loop, backend = loop_and_valkey
    limiter = ValkeyRateLimiter(backend, specs, gc_slack_ms=600_000)
    reference = ReferenceLimiter(specs)
    identity = uuid.uuid4().hex

    async def drive() -> None:
        now = t0
        for step, delta in enumerate(gaps):
            now += delta
            want = reference.check(identity, now)
            got = await limiter.check(identity, now=now)
            assert same(got, want), (step, now, got, want)

    loop.run_until_complete(drive())


@MEMORY_EXAMPLES
@given(limit=any_limit, t0=start, gaps=arrivals)
def test_memory_matches_reference(limit: dict[str, object], t0: float, gaps: list[float]) -> None:
    run_memory(compile_specs([limit]), t0, gaps)


@MEMORY_EXAMPLES
@given(limits=st.lists(any_limit, min_size=2, max_size=3), t0=start, gaps=arrivals)
def test_memory_multi_limit_matches_reference(
    limits: list[dict[str, object]], t0: float, gaps: list[float]
) -> None:
    run_memory(compile_specs(limits), t0, gaps)


@pytest.mark.valkey
@EXAMPLES
@given(limit=any_limit, t0=start, gaps=arrivals)
def test_valkey_matches_reference(
    loop_and_valkey, limit: dict[str, object], t0: float, gaps: list[float]
) -> None:  # type: ignore[no-untyped-def]
    run_valkey(loop_and_valkey, compile_specs([limit]), t0, gaps)


@pytest.mark.valkey
@EXAMPLES
@given(limits=st.lists(any_limit, min_size=2, max_size=3), t0=start, gaps=arrivals)
def test_valkey_multi_limit_matches_reference(loop_and_valkey, limits, t0, gaps) -> None:  # type: ignore[no-untyped-def]
    run_valkey(loop_and_valkey, compile_specs(limits), t0, gaps)


# -- cost per request: a weight of 0..6 units, taken all or nothing -----------------------------
cost = st.one_of(st.just(1), st.integers(0, 6))
weighted_arrivals = st.lists(st.tuples(gap, cost), min_size=1, max_size=30)


def run_memory_weighted(specs: list[LimitSpec], t0: float, steps: list[tuple[float, int]]) -> None:
    clock = FakeClock(t0)
    backend = MemoryBackend(clock=clock)
    memory = MemoryRateLimiter(backend.namespace("rate_limit"), clock, specs)
    reference = ReferenceLimiter(specs)
    for step, (delta, units) in enumerate(steps):
        clock.now += delta
        want = reference.check("who", clock.now, units)
        got = memory.check("who", units)
        assert same(got, want), (step, clock.now, units, got, want)


def run_valkey_weighted(
    loop_and_valkey: tuple[asyncio.AbstractEventLoop, ValkeyBackend],
    specs: list[LimitSpec],
    t0: float,
    steps: list[tuple[float, int]],
) -> None:
    loop, backend = loop_and_valkey
    limiter = ValkeyRateLimiter(backend, specs, gc_slack_ms=600_000)
    reference = ReferenceLimiter(specs)
    identity = uuid.uuid4().hex

    async def drive() -> None:
        now = t0
        for step, (delta, units) in enumerate(steps):
            now += delta
            want = reference.check(identity, now, units)
            got = await limiter.check(identity, now=now, cost=units)
            assert same(got, want), (step, now, units, got, want)

    loop.run_until_complete(drive())


@MEMORY_EXAMPLES
@given(limits=st.lists(any_limit, min_size=1, max_size=3), t0=start, steps=weighted_arrivals)
def test_memory_weighted_matches_reference(
    limits: list[dict[str, object]], t0: float, steps: list[tuple[float, int]]
) -> None:
    run_memory_weighted(compile_specs(limits), t0, steps)


@pytest.mark.valkey
@EXAMPLES
@given(limits=st.lists(any_limit, min_size=1, max_size=3), t0=start, steps=weighted_arrivals)
def test_valkey_weighted_matches_reference(loop_and_valkey, limits, t0, steps) -> None:  # type: ignore[no-untyped-def]
    run_valkey_weighted(loop_and_valkey, compile_specs(limits), t0, steps)


@settings(max_examples=200, deadline=None)
@given(limit=st.one_of(token_bucket, fixed_window, sliding_window), t0=start, steps=weighted_arrivals)
def test_reference_cost_is_all_or_nothing(
    limit: dict[str, object], t0: float, steps: list[tuple[float, int]]
) -> None:
    """A refused request leaves the state exactly as it was and reports what is left (less than its
    cost); an admitted one reports `remaining` lowered by its cost (nothing is partly taken)."""
    (spec,) = compile_specs([limit])
    reference = ReferenceLimiter([spec])
    now = t0
    for delta, units in steps:
        now += delta
        before = dict(reference.states)
        (decision,) = reference.check("who", now, units)
        if not decision.allowed:
            assert reference.states == before
            assert decision.remaining < units  # what is left, fewer than the cost asked
        else:
            assert decision.remaining <= spec.quota - units
