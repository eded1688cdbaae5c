"""Hypothesis: the memory ledger and credits.lua give the reference's answers under one injected clock.

Random mixes of reserve / commit / refund / grant / set / balance on two users and two credit types,
with a small pool of reservation ids (so duplicates, double settlements and settling an expired
reservation all happen) and time passing past reservation deadlines.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from propkit import LOCAL, SCRIPTED, T0, Clock, Scripted, fresh, scripted

from asgi_guard.stages.credits import CreditError, CreditStore, credit_store
from asgi_guard.stages.credits.reference import ReferenceLedger
from asgi_guard.state import MemoryBackend

__all__ = ["scripted"]

gap = st.one_of(st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5]), st.floats(0.0, 3.0))  # deadlines land exactly on "now"
op = st.tuples(
    gap,
    st.sampled_from(["reserve", "reserve", "commit", "commit_part", "refund", "grant", "set", "balance"]),
    st.integers(0, 1),  # user
    st.sampled_from(["default", "default", "gpu"]),
    st.integers(-3, 6),  # amount (negative only used by grant)
    st.integers(0, 3),  # reservation id
    st.sampled_from([0.5, 1.0, 2.5]),  # reservation ttl
)
ops = st.lists(op, min_size=1, max_size=40)


async def drive(store: CreditStore, plan: list[Any], clock: Clock, users: tuple[str, str]) -> None:
    ledger = ReferenceLedger()
    for user in users:  # start with money, so reservations succeed and their expiry shows
        assert await store.set(user, 8) == ledger.set(user, 8, clock.now)
    for n, (delta, name, who, ctype, amount, rid_n, ttl) in enumerate(plan):
        clock.now += delta
        now, user, rid = clock.now, users[who], f"r{rid_n}"
        want: Any
        got: Any
        if name == "reserve":
            amount = abs(amount)
            want = ledger.reserve(user, amount, rid, ttl, now, ctype)
            got = await store.reserve(user, amount, rid, ttl, ctype)
        elif name == "commit_part":  # the handler reported using `amount` (kept up to the reservation)
            want = ledger.settle(user, rid, False, now, ctype, abs(amount))
            got = await store.commit(user, rid, ctype, abs(amount))
        elif name in ("commit", "refund"):
            want = ledger.settle(user, rid, name == "refund", now, ctype)
            got = await (store.refund if name == "refund" else store.commit)(user, rid, ctype)
        elif name == "grant":
            try:
                want = ledger.grant(user, amount, now, ctype)
            except CreditError:
                want = CreditError
            try:
                got = await store.grant(user, amount, ctype)
            except CreditError:
                got = CreditError
        elif name == "set":
            want = ledger.set(user, abs(amount), now, ctype)
            got = await store.set(user, abs(amount), ctype)
        else:
            want = ledger.balance(user, now, ctype)
            got = await store.balance(user, ctype)
        assert got == want, (n, name, now, got, want)


@LOCAL
@given(plan=ops)
async def test_memory_matches_reference(plan: list[Any]) -> None:
    clock = Clock(T0)
    await drive(credit_store(MemoryBackend(clock=clock)), plan, clock, ("alice", "bob"))


@pytest.mark.valkey
@pytest.mark.cluster
@SCRIPTED
@given(plan=ops)
def test_lua_matches_reference(scripted: Scripted, plan: list[Any]) -> None:
    scripted.clock.now = T0
    users = (fresh(), fresh())
    scripted.run(drive(credit_store(scripted.backend), plan, scripted.clock, users))
