"""Hypothesis: TOTP replay and lock-out on memory and in security_totp.lua equal the pure reference.

Random claims of time steps (old, repeated, newer) and wrong codes for two subjects, with time
passing past the lock-out window and the step memory, on one injected clock: memory, standalone
and cluster give the same outcomes and the same Retry-After seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from propkit import LOCAL, SCRIPTED, T0, Clock, Scripted, fresh, scripted

from asgi_guard.stages.security.mfa import totp_store
from asgi_guard.stages.security.reference import ReferenceTotp
from asgi_guard.stages.security.store import TotpStore
from asgi_guard.state import MemoryBackend

__all__ = ["scripted"]

config = st.tuples(
    st.sampled_from([1.0, 3.0, 6.0]),  # step ttl
    st.integers(0, 3),  # max failures (0: no lock-out)
    st.sampled_from([1.0, 2.5, 5.0]),  # lock-out window
)
gap = st.one_of(st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5]), st.floats(0.0, 4.0))
step = st.tuples(
    gap, st.sampled_from(["claim", "claim", "fail", "fail"]), st.integers(0, 1), st.integers(0, 4)
)
steps = st.lists(step, min_size=1, max_size=40)
# Retry-After while locked out, 4.7 s left: the memory form said 4 (truncated), Valkey's TTL said 5
# (rounded); both now round up, so a client is never told to come back before the lock-out ends.
LOCKED_FRACTION = {
    "cfg": (3.0, 2, 5.0),
    "plan": [(0.0, "fail", 0, 0), (0.3, "fail", 0, 0), (0.0, "claim", 0, 1)],
}


async def drive(
    store: TotpStore, cfg: tuple[float, int, float], plan: list[Any], clock: Clock, prefix: str
) -> None:
    reference = ReferenceTotp(*cfg)
    for n, (delta, op, who, counter) in enumerate(plan):
        clock.now += delta
        now, subject = clock.now, f"{prefix}s{who}"
        if op == "claim":
            want = reference.claim(subject, counter, now)
            got = await store.claim(subject, counter)
        else:
            want = reference.fail(subject, now)
            got = await store.fail(subject)
        assert got == want, (n, op, now, got, want)


@LOCAL
@given(cfg=config, plan=steps)
@example(**LOCKED_FRACTION)
async def test_memory_matches_reference(cfg: tuple[float, int, float], plan: list[Any]) -> None:
    clock = Clock(T0)
    await drive(totp_store(MemoryBackend(clock=clock), *cfg), cfg, plan, clock, "")


@pytest.mark.valkey
@pytest.mark.cluster
@SCRIPTED
@given(cfg=config, plan=steps)
@example(**LOCKED_FRACTION)
def test_lua_matches_reference(scripted: Scripted, cfg: tuple[float, int, float], plan: list[Any]) -> None:
    scripted.clock.now = T0
    scripted.run(drive(totp_store(scripted.backend, *cfg), cfg, plan, scripted.clock, fresh()))
