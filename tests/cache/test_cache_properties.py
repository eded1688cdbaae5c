"""Hypothesis: the cache stores evict and expire as the pure reference says, for every algorithm.

Random gets and sets on a few keys into a small namespace. Memory: on an injected clock, with
expiry, comparing every hit (value, age, seconds left) and every eviction list. Valkey (standalone
and cluster): the cache scripts read the server's TIME (they take no test clock yet), so entries
live an hour and the comparison is of evictions, hits and values, the part that does not depend on
time.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from propkit import LOCAL, SCRIPTED, T0, Clock, Scripted, fresh, scripted

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.reference import ALGOS, ReferenceCache
from asgi_guard.stages.cache.stores import CacheStore, build_store
from asgi_guard.state import MemoryBackend

__all__ = ["scripted"]

config = st.tuples(st.integers(1, 4), st.sampled_from([1.0, 3.0, 10.0]))  # capacity, ttl; every algo runs
# mostly no time passing (so namespaces fill and evict), sometimes past an entry's ttl
gap = st.one_of(st.just(0.0), st.sampled_from([0.25, 0.5, 1.0, 3.0]), st.floats(0.0, 2.0))
step = st.tuples(gap, st.sampled_from(["get", "set", "set"]), st.integers(0, 5))
steps = st.lists(step, min_size=1, max_size=50)


async def drive(
    store: CacheStore, reference: ReferenceCache, plan: list[Any], clock: Clock, timed: bool
) -> None:
    for n, (delta, op, key_n) in enumerate(plan):
        clock.now += delta if timed else 0.0
        key = f"k{key_n}"
        if op == "set":
            value = CachedResponse(200, (), f"{key}@{n}".encode())
            want: Any = reference.set(key, value, clock.now)
            got: Any = await store.set(key, value)
        else:
            want = reference.get(key, clock.now)
            got = await store.get(key)
            if not timed and got is not None and want is not None:
                got, want = got[0], want[0]  # server time: compare the value only
        assert got == want, (n, op, key, clock.now, got, want)


@LOCAL
@given(cfg=config, plan=steps)
async def test_memory_matches_reference(cfg: tuple[int, float], plan: list[Any]) -> None:
    for algo in ALGOS:
        clock = Clock(T0)
        store = build_store(MemoryBackend(clock=clock), "prop", algo, *cfg)
        await drive(store, ReferenceCache(algo, *cfg), plan, clock, timed=True)


@pytest.mark.valkey
@pytest.mark.cluster
@SCRIPTED
@given(cfg=config, plan=steps)
def test_lua_evicts_as_the_reference(scripted: Scripted, cfg: tuple[int, float], plan: list[Any]) -> None:
    capacity = cfg[0]
    for algo in ALGOS:
        store = build_store(scripted.backend, fresh(), algo, capacity, 3600.0)
        scripted.run(drive(store, ReferenceCache(algo, capacity, 3600.0), plan, scripted.clock, timed=False))


# gaps whose sums stay whole milliseconds in binary floating point, so the Lua forms (ms) and the
# reference (float seconds) meet each expiry at the same instant
exact_gap = st.one_of(st.just(0.0), st.sampled_from([0.25, 0.5, 1.0, 3.0]))
exact_steps = st.lists(
    st.tuples(exact_gap, st.sampled_from(["get", "set", "set"]), st.integers(0, 5)), max_size=50
)


@pytest.mark.valkey
@pytest.mark.cluster
@SCRIPTED
@given(cfg=config, plan=exact_steps)
def test_lua_expires_and_evicts_as_the_reference(
    scripted: Scripted, cfg: tuple[int, float], plan: list[Any]
) -> None:
    """With time passing (the scripts read the test clock): expired entries miss, make room only when
    the namespace is full, an expired key written again starts over (lfu), and each hit's value, age
    and seconds left are the reference's."""
    for algo in ALGOS:
        store = build_store(scripted.backend, fresh(), algo, *cfg)
        scripted.run(drive(store, ReferenceCache(algo, *cfg), plan, scripted.clock, timed=True))


@pytest.mark.valkey
def test_lua_an_expired_key_written_again_starts_its_uses_over(scripted: Scripted) -> None:
    """lfu: k0 used twice, expires, is written again (1 use), k1 gets 2 uses: a full namespace then
    evicts k0, as the reference does (a count carried over the expiry would evict k1)."""
    plan = [
        (0.0, "set", 0),
        (0.0, "get", 0),
        (1.0, "set", 0),
        (0.0, "set", 1),
        (0.0, "get", 1),
        (0.0, "set", 2),
    ]
    for algo in ALGOS:
        store = build_store(scripted.backend, fresh(), algo, 2, 1.0)
        scripted.run(drive(store, ReferenceCache(algo, 2, 1.0), plan, scripted.clock, timed=True))
