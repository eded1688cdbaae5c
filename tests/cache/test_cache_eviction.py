"""Eviction order per algorithm, on the memory store and on real Valkey (standalone and cluster)."""

from __future__ import annotations

import pytest
from guardkit import Clock

from asgi_guard.config import PoolingConfig
from asgi_guard.stages.cache import CachedResponse
from asgi_guard.stages.cache.stores import CacheStore, build_store
from asgi_guard.state import Backend, ValkeyBackend


def entry(name: str) -> CachedResponse:
    return CachedResponse(200, ((b"content-type", b"text/plain"),), name.encode())


async def present(store: CacheStore, names: str) -> set[str]:
    return {n for n in names if await store.get(n) is not None}


# capacity 3: store a, b, c; hit a twice and b once; then store d and e.
# uses: a = 3 (write + 2 hits), b = 2, c = 1; use order c < a < b.
EXPECTED = {
    "fifo": (["a"], ["b"], "cde"),  # oldest write goes, hits don't matter
    "lifo": (["c"], ["d"], "abe"),  # newest write goes
    "lru": (["c"], ["a"], "bde"),  # least recently used goes
    "mru": (["b"], ["d"], "ace"),  # most recently used goes
    "lfu": (["c"], ["d"], "abe"),  # fewest uses goes (d has 1 use, b has 2)
}


@pytest.mark.parametrize("algo", list(EXPECTED))
async def test_eviction_order(backend: Backend, algo: str) -> None:
    store = build_store(backend, f"evict-{algo}", algo, capacity=3, ttl=300)
    for name in "abc":
        assert await store.set(name, entry(name)) == []
    for name in "aab":
        hit = await store.get(name)
        assert hit is not None and hit[0].body == name.encode()
    first, second, survivors = EXPECTED[algo]
    assert await store.set("d", entry("d")) == first
    assert await store.set("e", entry("e")) == second
    assert await present(store, "abcde") == set(survivors)


@pytest.mark.parametrize("algo", ["lru", "lfu", "fifo"])
async def test_rewrite_does_not_evict(backend: Backend, algo: str) -> None:
    store = build_store(backend, f"rewrite-{algo}", algo, capacity=2, ttl=300)
    await store.set("a", entry("a"))
    await store.set("b", entry("b"))
    assert await store.set("a", entry("a2")) == []
    found = await store.get("a")
    assert found is not None and found[0].body == b"a2"
    # a was rewritten last: for fifo and lru b goes next; for lfu a has 2 uses, b 1.
    assert await store.set("c", entry("c")) == ["b"]


async def test_lfu_ties_go_to_least_recently_used(backend: Backend) -> None:
    store = build_store(backend, "lfu-ties", "lfu", capacity=3, ttl=300)
    for name in "abc":
        await store.set(name, entry(name))
    for name in "cba":  # all at 2 uses; c reached it first
        await store.get(name)
    assert await store.set("d", entry("d")) == ["c"]
    assert await store.set("e", entry("e")) == ["d"]


async def test_memory_expiry_frees_capacity() -> None:
    from asgi_guard.state import MemoryBackend

    clock = Clock()
    store = build_store(MemoryBackend(clock=clock), "expiry", "lru", capacity=2, ttl=10)
    await store.set("a", entry("a"))
    clock.now += 6
    await store.set("b", entry("b"))
    found = await store.get("b")
    assert found is not None and found[1] == 0 and found[2] == 10
    clock.now += 5  # a has expired, b has 5 s left
    assert await store.get("a") is None
    assert await store.set("c", entry("c")) == []  # the expired entry made room
    assert await present(store, "abc") == {"b", "c"}


async def test_valkey_entry_ttl_is_bounded(valkey_url: str, key_prefix: str) -> None:
    backend = ValkeyBackend(valkey_url, PoolingConfig(socket_timeout=3.0), key_prefix)
    try:
        store = build_store(backend, "ttl", "fifo", capacity=4, ttl=7)
        await store.set("a", entry("a"))
        found = await store.get("a")
        assert found is not None
        _, age, left = found
        assert 0 <= age < 2 and 5 < left <= 7
        ttl = await backend.client.pttl(f"{key_prefix}:cache:{{ttl}}:e:a")
        assert 5000 < ttl <= 7000
    finally:
        await backend.close()
