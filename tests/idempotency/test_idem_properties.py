"""Hypothesis: memory records and the two idempotency scripts give the reference's answers.

Random claim / finish / release steps on a few keys, by a few owners, with two fingerprints, and
time passing past lock and replay TTLs, all on one injected clock: memory, standalone and cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from propkit import LOCAL, SCRIPTED, T0, Clock, Scripted, fresh, scripted

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.idempotency import IdempotencyStore, build_store
from asgi_guard.stages.idempotency.reference import ReferenceRecords
from asgi_guard.state import MemoryBackend

__all__ = ["scripted"]

gap = st.one_of(st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0]), st.floats(0.0, 3.0))
step = st.tuples(
    gap,
    st.sampled_from(["claim", "claim", "finish", "release"]),
    st.integers(0, 1),  # key
    st.integers(0, 2),  # owner token
    st.integers(0, 1),  # fingerprint
    st.sampled_from([0.5, 1.0, 2.0]),  # lock ttl / replay ttl
)
steps = st.lists(step, min_size=1, max_size=40)


async def drive(store: IdempotencyStore, plan: list[Any], clock: Clock, prefix: str) -> None:
    reference = ReferenceRecords()
    for n, (delta, op, key_n, token_n, fp_n, ttl) in enumerate(plan):
        clock.now += delta
        now, key, token = clock.now, f"{prefix}k{key_n}", f"t{token_n}"
        got: Any
        want: Any
        if op == "claim":
            want = reference.claim(key, f"fp{fp_n}", token, ttl, now)
            got = await store.claim(key, f"fp{fp_n}", token, ttl)
        elif op == "finish":
            response = CachedResponse(200 + n, ((b"x-step", str(n).encode()),), b"body %d" % n)
            want = reference.finish(key, token, response, ttl, now)
            got = await store.finish(key, token, response, ttl)
        else:
            want = reference.release(key, token, now)
            got = await store.release(key, token)
        assert got == want, (n, op, now, got, want)


@LOCAL
@given(plan=steps)
async def test_memory_matches_reference(plan: list[Any]) -> None:
    clock = Clock(T0)
    await drive(build_store(MemoryBackend(clock=clock)), plan, clock, "")


@pytest.mark.valkey
@pytest.mark.cluster
@SCRIPTED
@given(plan=steps)
def test_lua_matches_reference(scripted: Scripted, plan: list[Any]) -> None:
    scripted.clock.now = T0
    scripted.run(drive(build_store(scripted.backend), plan, scripted.clock, fresh()))
