"""The credits ledger API, in memory and on real Valkey (standalone and 3-node cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asgi_guard.config import PoolingConfig
from asgi_guard.stages.credits import CreditError, CreditStore, ReserveStatus, credit_store
from asgi_guard.state import MemoryBackend, ValkeyBackend

from ._helpers import Clock


@pytest.fixture(params=["memory", "valkey", "cluster"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[CreditStore]:
    if request.param == "memory":
        yield credit_store(MemoryBackend())
        return
    url = request.getfixturevalue("valkey_url" if request.param == "valkey" else "valkey_cluster_url")
    backend = ValkeyBackend(url, PoolingConfig(socket_timeout=3.0), key_prefix=key_prefix)  # a busy CI box
    await backend.start()
    yield credit_store(backend)
    await backend.close()


async def test_grant_set_show(store: CreditStore) -> None:
    assert await store.balance("alice") == 0
    assert await store.grant("alice", 5) == 5
    assert await store.grant("alice", 3) == 8
    assert await store.grant("alice", -2) == 6
    assert await store.balance("alice", "gpu") == 0, "credit types are separate balances"
    assert await store.set("alice", 40, "gpu") == 40
    assert await store.balance("alice", "gpu") == 40 and await store.balance("alice") == 6
    with pytest.raises(CreditError):
        await store.grant("alice", -7)
    with pytest.raises(CreditError):
        await store.set("alice", -1)
    assert await store.balance("alice") == 6


async def test_names_with_braces_do_not_collide(store: CreditStore) -> None:
    await store.grant("a{b}", 7)
    assert await store.balance("ab") == 0
    assert await store.balance("a{b}") == 7


async def test_reserve_commit_refund_exactly_once(store: CreditStore) -> None:
    await store.set("bob", 10)
    first = await store.reserve("bob", 4, "r1", ttl=60)
    assert first.status is ReserveStatus.RESERVED and first.balance == 6
    again = await store.reserve("bob", 4, "r1", ttl=60)
    assert again.status is ReserveStatus.DUPLICATE and again.balance == 6, "never charged twice"
    short = await store.reserve("bob", 7, "r2", ttl=60)
    assert short.status is ReserveStatus.SHORT and short.balance == 6
    assert (await store.commit("bob", "r1")).done
    assert not (await store.refund("bob", "r1")).done, "a committed reservation is never refunded"
    assert await store.balance("bob") == 6
    assert (await store.reserve("bob", 6, "r3", ttl=60)).balance == 0
    refund = await store.refund("bob", "r3")
    assert refund.done and refund.balance == 6
    assert not (await store.commit("bob", "r3")).done
    assert not (await store.refund("bob", "r3")).done
    assert await store.balance("bob") == 6


async def test_concurrent_reservations_never_overspend(store: CreditStore) -> None:
    await store.set("carol", 10)
    results = await asyncio.gather(*(store.reserve("carol", 1, f"r{i}", ttl=60) for i in range(40)))
    assert sum(r.status is ReserveStatus.RESERVED for r in results) == 10
    assert await store.balance("carol") == 0


async def test_expired_reservation_refunded_by_next_reader_valkey(valkey_url: str, key_prefix: str) -> None:
    backend = ValkeyBackend(valkey_url, key_prefix=key_prefix)
    store = credit_store(backend)
    await store.set("dave", 5)
    assert (await store.reserve("dave", 3, "dead-process", ttl=0.05)).balance == 2
    await asyncio.sleep(0.15)
    assert await store.balance("dave") == 5, "whoever looks next refunds the expired reservation"
    assert not (await store.commit("dave", "dead-process")).done, "settled once: by the expiry refund"
    assert await store.balance("dave") == 5
    await backend.close()


async def test_expired_reservation_refunded_by_next_reader_memory() -> None:
    clock = Clock()
    store = credit_store(MemoryBackend(clock=clock))
    await store.set("erin", 5)
    await store.reserve("erin", 3, "slow", ttl=30)
    await store.reserve("erin", 1, "fast", ttl=300)
    clock.now += 31
    assert await store.balance("erin") == 4
    assert not (await store.refund("erin", "slow")).done
    assert (await store.commit("erin", "fast")).done
    assert await store.balance("erin") == 4
