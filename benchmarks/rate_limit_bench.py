"""Rate limiting: per-decision cost of each algorithm on both backends, the stack's overhead against
bare Starlette, and Valkey round trips per request counted from INFO commandstats (commands) and INFO
stats (reads: pipelined commands arrive in one read), for a limit-only request and for a cache hit on
a route with a rate limit and the cache (whose lookup rides in the rate-limit round trip).

Run:  .venv/bin/python benchmarks/rate_limit_bench.py            (starts a private valkey-server)
      .venv/bin/python benchmarks/rate_limit_bench.py --valkey-url valkey://127.0.0.1:6379 --seconds 1
Each measurement is bounded by --seconds (default 1.5); the whole run takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _asgi import make_scope, per_request_us
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import CacheConfig, RateLimitConfig
from asgi_guard.stages.cache.prefetch import prefetchers
from asgi_guard.stages.rate_limit import (
    MemoryRateLimiter,
    ValkeyRateLimiter,
    specs_from_config,
)
from asgi_guard.state import MemoryBackend, ValkeyBackend

BIG = 1_000_000_000
ALGOS: dict[str, dict[str, Any]] = {
    "token_bucket": {"algo": "token_bucket", "token_bucket": {"rate_limit": BIG, "refill_rate": 1.0}},
    "fixed_window": {"algo": "fixed_window", "fixed_window": {"limit": BIG, "window": 60}},
    "sliding_window (exact, limit 100)": {
        "algo": "sliding_window",
        "sliding_window": {"limit": 100, "window": 3600},
    },
    "sliding_window (approximate)": {
        "algo": "sliding_window",
        "sliding_window": {"limit": BIG, "window": 60, "precision": "approximate"},
    },
    "throttle": {"algo": "throttle", "throttle": {"interval": 1.0}},
    "debounce": {"algo": "debounce", "debounce": {"interval": 1.0}},
    "multi (token_bucket + fixed_window)": {
        "algo": "token_bucket",
        "token_bucket": {"rate_limit": BIG, "refill_rate": 1.0},
        "limits": [{"algo": "fixed_window", "fixed_window": {"limit": BIG, "window": 86400}}],
    },
}


def memory_decision_us(config: RateLimitConfig, seconds: float) -> float:
    backend = MemoryBackend()
    limiter = MemoryRateLimiter(backend.namespace("rate_limit"), backend.clock, specs_from_config(config))
    identities = [f"route:user{i}:-" for i in range(1000)]
    check, n, start = limiter.check, 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for identity in identities:
            check(identity)
        n += len(identities)
    return (time.perf_counter() - start) / n * 1e6


async def valkey_decision_us(backend: ValkeyBackend, config: RateLimitConfig, seconds: float) -> float:
    limiter = ValkeyRateLimiter(backend, specs_from_config(config))
    await limiter.check("warm-up")
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for i in range(100):
            await limiter.check(f"route:user{i}:-")
        n += 100
    return (time.perf_counter() - start) / n * 1e6


def apps(settings: GuardSettings, enabled: bool = True, cache: bool = False) -> tuple[Any, Any]:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    bare = Starlette(routes=[Route("/items/{resource_id}", hello)])
    registry = RouteRegistry()
    job = JobConfig(
        endpoint_name="items",
        rate_limit={**ALGOS["token_bucket"], "enabled": enabled},
        cache=CacheConfig(enabled=cache),
    )
    registry.register("/items/{resource_id}", job)
    inner = Starlette(routes=[Route("/items/{resource_id}", hello)])
    guarded = GuardMiddleware(inner, registry=registry, settings=settings)
    return bare, guarded


TOP_LEVEL = (
    "cmdstat_evalsha",
    "cmdstat_eval",
    "cmdstat_evalsha_ro",
    "cmdstat_eval_ro",
    "cmdstat_script|load",
)


async def command_calls(backend: ValkeyBackend) -> tuple[int, int]:
    """(commands sent by clients, commands run inside scripts), from INFO commandstats.

    commandstats counts a script's inner redis.call()s too; during the measured loop the only
    client-issued commands are EVAL/EVALSHA (and SCRIPT LOAD once), so those are the round trips.
    """
    stats = await backend.client.info("commandstats")
    top = sum(int(v["calls"]) for k, v in stats.items() if k in TOP_LEVEL)
    inner = sum(int(v["calls"]) for k, v in stats.items() if k not in TOP_LEVEL and k != "cmdstat_info")
    return top, inner


async def server_counts(backend: ValkeyBackend) -> tuple[int, int]:
    """(commands sent by clients, client reads processed) in one INFO call; the INFO itself is one
    read, and a pipeline of small commands is one read, so reads count round trips."""
    info = await backend.client.info("all")
    top = sum(int(v["calls"]) for k, v in info.items() if k in TOP_LEVEL)
    return top, int(info["total_reads_processed"])


async def per_request_counts(
    backend: ValkeyBackend, app: Any, scope: dict[str, Any], requests: int
) -> tuple[float, float]:
    """(commands, round trips) per request over `requests` sequential requests."""
    from _asgi import call

    top0, reads0 = await server_counts(backend)
    for _ in range(requests):
        await call(app, scope)
    top1, reads1 = await server_counts(backend)
    return (top1 - top0) / requests, (reads1 - reads0 - 1) / requests


async def limit_cache_hit(
    settings: GuardSettings, valkey: ValkeyBackend, prefetch: bool, seconds: float
) -> tuple[float, float, float]:
    """(µs, commands, round trips) per cache hit on a route with a rate limit and the cache;
    `prefetch=False` is the way it was before the prefetch: the limit, then the cache lookup."""
    from _asgi import call

    _, app = apps(settings, cache=True)
    if not prefetch:
        prefetchers(app.runtime).clear()  # before the first request: the limit never finds it
    scope = make_scope("GET", "/items/7")
    assert await call(app, scope) == 200  # the miss that fills the entry (and loads the scripts)
    try:
        us, statuses = await per_request_us(app, lambda i: scope, 500, budget_s=seconds)
        assert set(statuses) == {200}, statuses
        commands, trips = await per_request_counts(valkey, app, scope, 300)
        return us, commands, trips
    finally:
        await app.runtime.shutdown()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--valkey-url", help="use this server instead of starting a private one")
    parser.add_argument("--seconds", type=float, default=1.5, help="time bound of each measurement")
    args = parser.parse_args()
    deployment = None
    url = args.valkey_url
    if url is None:
        from asgi_guard_dev.valkey import start_standalone

        deployment = start_standalone()
        url = deployment.url
    try:
        settings = GuardSettings(valkey_url=url, key_prefix="bench" + uuid.uuid4().hex[:6])
        valkey = ValkeyBackend(url, settings.pooling, settings.key_prefix)
        print("Per-decision cost (one request's decision, sequential, one event loop)\n")
        print("| algorithm | memory (µs) | valkey (µs, 1 round trip) |")
        print("|---|---:|---:|")
        for name, raw in ALGOS.items():
            config = RateLimitConfig(enabled=True, **raw)
            mem = memory_decision_us(config, args.seconds / 3)
            rtt = await valkey_decision_us(valkey, config, args.seconds / 3)
            print(f"| {name} | {mem:.2f} | {rtt:.1f} |")

        scope = make_scope("GET", "/items/1")
        n = 2000
        bare, guarded_mem = apps(GuardSettings())
        _, guarded_off = apps(GuardSettings(), enabled=False)
        bare_us, _ = await per_request_us(bare, lambda i: scope, n, budget_s=args.seconds)
        off_us, _ = await per_request_us(guarded_off, lambda i: scope, n, budget_s=args.seconds)
        mem_us, mem_status = await per_request_us(guarded_mem, lambda i: scope, n, budget_s=args.seconds)
        _, guarded_valkey = apps(settings)
        valkey_us, valkey_status = await per_request_us(
            guarded_valkey, lambda i: scope, n // 4, budget_s=args.seconds
        )
        print("\nWhole request, in-process ASGI (median of rounds)\n")
        print("| app | µs/request | vs bare |")
        print("|---|---:|---:|")
        print(f"| bare Starlette | {bare_us:.1f} | 1.00x |")
        print(
            f"| asgi-guard stack, route registered, no stage enabled | {off_us:.1f} | {off_us / bare_us:.2f}x |"
        )
        print(f"| + rate limit (token bucket), memory | {mem_us:.1f} | {mem_us / bare_us:.2f}x |")
        print(f"| + rate limit (token bucket), valkey | {valkey_us:.1f} | {valkey_us / bare_us:.2f}x |")
        assert set(mem_status) == {200} and set(valkey_status) == {200}, (mem_status, valkey_status)

        requests = 500
        from _asgi import call

        top0, inner0 = await command_calls(valkey)
        for _ in range(requests):
            await call(guarded_valkey, scope)
        top1, inner1 = await command_calls(valkey)
        print(
            f"\nValkey round trips per rate-limited request (INFO commandstats): {(top1 - top0) / requests:.2f}"
        )
        print(f"  commands run inside the script per request: {(inner1 - inner0) / requests:.2f}")
        print("\nCache hit on a route with a rate limit and the cache (INFO commandstats / INFO stats)\n")
        print("| | µs / request | commands / request | round trips / request |")
        print("|---|---:|---:|---:|")
        for label, prefetch in (
            ("limit, then cache lookup (prefetch off)", False),
            ("prefetched (default)", True),
        ):
            us, commands, trips = await limit_cache_hit(settings, valkey, prefetch, args.seconds)
            print(f"| {label} | {us:.1f} | {commands:.2f} | {trips:.2f} |")
        await valkey.close()
        await guarded_valkey.runtime.shutdown()
    finally:
        if deployment is not None:
            deployment.stop()


if __name__ == "__main__":
    asyncio.run(main())
