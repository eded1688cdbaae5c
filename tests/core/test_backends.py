"""Backends: the embedded store, and ValkeyBackend on a real server (standalone and 3-node cluster)."""

from __future__ import annotations

import asyncio
import time

import pytest

from asgi_guard import BackendUnavailable, GuardSettings
from asgi_guard.config import PoolingConfig
from asgi_guard.state import MemoryBackend, ValkeyBackend, backend_from_settings, hash_tag
from asgi_guard.state.memory import ExpiringStore
from asgi_guard_dev.valkey import ValkeyDeployment

SCRIPT = (
    "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return redis.call('TIME')[1]"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_expiring_store_ttl_and_bound() -> None:
    clock = Clock()
    store = ExpiringStore(clock, max_keys=3)
    store.set("a", 1, ttl=10)
    store.set("b", 2)
    assert store.get("a") == 1 and store.ttl("a") == 10
    clock.now += 10
    assert store.get("a") is None and "a" not in store
    store.set("c", 3)
    store.set("d", 4)
    store.set("e", 5)  # bound: the least recently written entry goes
    assert len(store) == 3 and store.get("b") is None
    assert store.pop("e") == 5 and store.pop("e", "gone") == "gone"


async def test_memory_backend_namespaces_share_one_clock() -> None:
    clock = Clock()
    backend = MemoryBackend(clock=clock)
    assert backend.namespace("x") is backend.namespace("x")
    assert backend.namespace("x") is not backend.namespace("y")
    assert await backend.now() == 1000.0 and await backend.ping()


def test_backend_from_settings_picks_by_url() -> None:
    assert isinstance(backend_from_settings(GuardSettings(_env_file=None)), MemoryBackend)  # type: ignore[call-arg]
    assert isinstance(
        backend_from_settings(GuardSettings(valkey_url="memory://", _env_file=None)), MemoryBackend
    )  # type: ignore[call-arg]
    tls = backend_from_settings(GuardSettings(valkey_url="valkeys://127.0.0.1:1/0", _env_file=None))  # type: ignore[call-arg]
    assert isinstance(tls, ValkeyBackend) and not tls.is_cluster
    cluster = backend_from_settings(
        GuardSettings(valkey_url="valkey+cluster://127.0.0.1:1,127.0.0.1:2", _env_file=None)
    )  # type: ignore[call-arg]
    assert isinstance(cluster, ValkeyBackend) and cluster.is_cluster


def test_keys_are_hash_tagged_and_client_braces_escaped() -> None:
    backend = ValkeyBackend("valkey://127.0.0.1:1/0", key_prefix="ag")
    # One escaping rule for every part (issue 13): separators inside a tag are escaped too.
    assert backend.key("rate_limit", "io:user{evil}:42", "fixed") == "ag:rate_limit:{io%3Auser%7Bevil%7D%3A42}:fixed"
    assert hash_tag("a{b}c") == "{a%7Bb%7Dc}"
    assert hash_tag("plain") == "{plain}"
    # distinct values never share a key
    assert len({hash_tag(v) for v in ("a{b}", "ab", "a%7Bb%7D", "a%b")}) == 4


@pytest.mark.parametrize("which", ["standalone", "cluster"])
async def test_valkey_backend_runs_multi_key_script(
    which: str, valkey_url: str, valkey_cluster_url: str
) -> None:
    url = valkey_url if which == "standalone" else valkey_cluster_url
    backend = ValkeyBackend(url)
    try:
        assert await backend.ping()
        assert abs(await backend.now() - time.time()) < 5
        keys = [backend.key("test", "user-1", "a"), backend.key("test", "user-1", "b")]
        script = backend.client.register_script(SCRIPT)
        seconds = await backend.call(script(keys=keys, args=["v"]))
        assert abs(int(seconds) - time.time()) < 5
        assert await backend.call(backend.client.get(keys[1])) == b"v"
        # NOSCRIPT: the script is reloaded transparently after a flush
        await backend.call(backend.client.script_flush())
        assert await backend.call(script(keys=keys, args=["w"]))
    finally:
        await backend.close()


async def test_down_server_is_fast_backend_unavailable(own_valkey: ValkeyDeployment) -> None:
    backend = ValkeyBackend(own_valkey.url, PoolingConfig(socket_timeout=0.2, connect_timeout=0.2))
    try:
        assert await backend.ping()
        own_valkey.nodes[0].stop()
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(backend.now(), 5)
        assert not await asyncio.wait_for(backend.ping(), 5)
        own_valkey.nodes[0].start()
        for _ in range(50):
            if await backend.ping():
                break
            await asyncio.sleep(0.05)
        assert await backend.now() > 0
    finally:
        await backend.close()
