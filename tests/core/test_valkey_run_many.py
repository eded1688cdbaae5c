"""`ValkeyBackend.run_many` on a standalone server: the calls run as one fused script (one EVALSHA,
one TIME), each answers for itself, a failing part fails alone, and NOSCRIPT reloads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from guardkit import UNCROSSED_WINDOW

import asgi_guard
from asgi_guard.config import PoolingConfig
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.stages.cache.valkey import ValkeyCacheStore
from asgi_guard.stages.rate_limit.spec import LimitSpec
from asgi_guard.stages.rate_limit.valkey import SCRIPT, ValkeyRateLimiter
from asgi_guard.state import ValkeyBackend
from asgi_guard.state.valkey import fused, load_script_source
from asgi_guard_dev.valkey import ValkeyDeployment


def _backend(url: str, key_prefix: str) -> ValkeyBackend:
    return ValkeyBackend(url, PoolingConfig(socket_timeout=3.0, connect_timeout=3.0), key_prefix)


async def _stats(backend: ValkeyBackend) -> dict[str, int]:
    info = await backend.client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def test_one_script_call_and_one_time_for_all(own_valkey: ValkeyDeployment, key_prefix: str) -> None:
    backend = _backend(own_valkey.url, key_prefix)
    limiter = ValkeyRateLimiter(backend, _specs())
    cache = ValkeyCacheStore(backend, "r", "lru", 8, 60.0)
    try:
        await limiter.check_with("u", cache.lookup_call("k", True, {}))  # loads the fused script
        before = await _stats(backend)
        decisions, answer = await limiter.check_with("u", cache.lookup_call("k2", True, {}))
        after = await _stats(backend)
        assert [d.allowed for d in decisions] == [True] and answer is None  # a miss, lock taken
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        delta.pop("info", None)
        assert delta["evalsha"] == 1 and delta["time"] == 1
        assert delta == {"evalsha": 1, "time": 1, "hmget": 2, "hincrby": 1, "set": 1}
    finally:
        await backend.close()


async def test_a_failing_part_fails_alone(valkey_url: str, key_prefix: str) -> None:
    backend = _backend(valkey_url, key_prefix)
    limiter = ValkeyRateLimiter(backend, _specs())
    try:
        await backend.client.set(backend.key("cache", "r") + ":e:k", "not a hash")
        cache = ValkeyCacheStore(backend, "r", "lru", 8, 60.0)
        decisions, answer = await limiter.check_with("u", cache.lookup_call("k", True, {}))
        assert decisions[0].allowed and isinstance(answer, BackendUnavailable)
        assert "WRONGTYPE" in str(answer)
        # an error reply (not a raised error) is one too: an unknown limit code
        bad = (SCRIPT, [backend.key("rl", "u", "x")], ["", "1", "1000", "1", "zz", "1", "1", "1"])
        answers = await backend.run_many([bad, cache.lookup_call("k2", False, {})])
        assert isinstance(answers[0], BackendUnavailable) and "unknown algorithm" in str(answers[0])
        assert answers[1] is None  # the lookup still answered: a miss
    finally:
        await backend.close()


async def test_flushed_fused_script_is_reloaded(valkey_url: str, key_prefix: str) -> None:
    backend = _backend(valkey_url, key_prefix)
    limiter = ValkeyRateLimiter(backend, _specs(limit=2))
    cache = ValkeyCacheStore(backend, "r", "fifo", 8, 60.0)
    try:
        first, _ = await limiter.check_with("u", cache.lookup_call("k", False, {}))
        await backend.client.script_flush()
        second, _ = await limiter.check_with("u", cache.lookup_call("k", False, {}))
        third, _ = await limiter.check_with("u", cache.lookup_call("k", False, {}))
        # NOSCRIPT ran nothing: the reload counted the second request once
        assert [first[0].remaining, second[0].remaining, third[0].allowed] == [1, 0, False]
    finally:
        await backend.close()


@pytest.mark.parametrize("names", [["b:x", "a:y", "b:x"], ["a:y", "b:x"]])
def test_the_fused_script_is_named_by_its_distinct_parts(names: list[str]) -> None:
    assert fused(names) == "fused:a:y|b:x"


async def test_every_shipped_script_compiles_fused(valkey_url: str, key_prefix: str) -> None:
    """Each part becomes a function body of the fused script: every shipped script must load so."""
    root = Path(asgi_guard.__file__).parent
    refs = [
        f"asgi_guard.{p.parent.relative_to(root).as_posix().replace('/', '.')}:{p.stem}"
        for p in root.glob("stages/*/*.lua")
    ]
    assert len(refs) >= 8
    backend = _backend(valkey_url, key_prefix)
    try:
        for ref in refs:
            source = load_script_source(fused([ref, SCRIPT]))
            assert source.count("local function script_now") == 1
            assert len(await backend.client.script_load(source)) == 40
    finally:
        await backend.close()


def _specs(limit: int = 5) -> list[LimitSpec]:
    return [LimitSpec("p", "fw", float(limit), float(UNCROSSED_WINDOW))]  # `limit` per uncrossed window
