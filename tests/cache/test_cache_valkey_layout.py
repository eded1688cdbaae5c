"""The Valkey cache layout across an upgrade: entries and counters written by the previous scripts
(no `x` expiry field in the entry; the `:n` use counter) keep working with the current ones."""

from __future__ import annotations

from asgi_guard.config import PoolingConfig
from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.valkey import ValkeyCacheStore
from asgi_guard.state import ValkeyBackend


def _store(url: str, key_prefix: str, algo: str = "lru") -> ValkeyCacheStore:
    backend = ValkeyBackend(url, PoolingConfig(socket_timeout=3.0, connect_timeout=3.0), key_prefix)
    return ValkeyCacheStore(backend, "layout", algo, 4, 60.0)


async def test_an_entry_without_its_expiry_field_still_hits(valkey_url: str, key_prefix: str) -> None:
    store = _store(valkey_url, key_prefix)
    try:
        await store.set("k", CachedResponse(200, (), b"v"))
        entry = store.backend.key("cache", "layout") + ":e:k"
        assert await store.backend.client.hdel(entry, "x") == 1  # as the previous cache_set wrote it
        found = await store.get("k")
        assert found is not None and found[0].body == b"v"
        assert 0 <= found[1] < 5 and 55 < found[2] <= 60  # age and seconds left from TIME and PTTL
    finally:
        await store.backend.close()


async def test_the_use_counter_continues(valkey_url: str, key_prefix: str) -> None:
    """The order keeps counting from the counter the previous scripts left: a new write is newest."""
    store = _store(valkey_url, key_prefix, "fifo")
    client = store.backend.client
    base = store.backend.key("cache", "layout")
    try:
        await client.set(base + ":n", 1000)
        await store.set("a", CachedResponse(200, (), b"a"))
        assert await client.zscore(base + ":o", "a") == 1001
        assert 0 < await client.pttl(base + ":n") <= 120_000  # the counter got its expiry
    finally:
        await store.backend.close()


async def test_a_store_that_guessed_the_vary_names_wrong_finds_the_right_variant(
    valkey_url: str, key_prefix: str
) -> None:
    """Two processes: the one that did not store the entry guesses its Vary names wrong, is told
    them, and looks up again (in `get`); a lock is taken only by the lookup that was right."""
    from asgi_guard.stages.cache import control

    writer, reader = _store(valkey_url, key_prefix), _store(valkey_url, key_prefix)
    fr = control.fingerprint([(b"accept-language", b"fr")])
    en = control.fingerprint([(b"accept-language", b"en")])
    names = ("accept-language",)
    try:
        await writer.set("k", CachedResponse(200, (), b"fr"), control.secondary(names, fr), names)
        found = await reader.get("k", False, fr)
        assert isinstance(found, tuple) and found[0].body == b"fr"
        assert await reader.get("k", True, en) is None  # a miss, and the fill lock is the reader's
        assert await writer.get("k", True, en) is not None  # WAIT: the reader fills
        await writer.set(
            "k", CachedResponse(200, (), b"any"), control.secondary(("accept",), {}), ("accept",)
        )
        found = await reader.get("k", False, fr)  # the names changed: wrong guess again, then right
        assert isinstance(found, tuple) and found[0].body == b"any"
    finally:
        await writer.backend.close()
        await reader.backend.close()
