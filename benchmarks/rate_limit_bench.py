"""Rate limiting through the public API only: per-request cost of each algorithm on a route that has
only a rate limit (bare Starlette app + `install`), on the embedded backend and on a real valkey-server,
against bare Starlette; Valkey commands and round trips per request (INFO commandstats / MONITOR /
INFO total_reads_processed); and the same for a cache hit on a route with a rate limit and the cache.

No tracer provider is installed here (see overhead.py for the traced, side-by-side comparison).

Run:  python benchmarks/rate_limit_bench.py [--seconds 1.0]      (starts a private valkey-server)
Each measurement is bounded by --seconds; the whole run takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _asgi import call, make_scope
from _services import Monitor, ValkeyServer, commandstats, start_valkey
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install

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
    "throttle (1 ms)": {"algo": "throttle", "throttle": {"interval": 0.001}},
    "debounce (1 ms)": {"algo": "debounce", "debounce": {"interval": 0.001}},
    "multi (token_bucket + fixed_window)": {
        "algo": "token_bucket",
        "token_bucket": {"rate_limit": BIG, "refill_rate": 1.0},
        "limits": [{"algo": "fixed_window", "fixed_window": {"limit": BIG, "window": 86400}}],
    },
}
KEYS = 1000  # distinct resource ids, so throttle/debounce see each key once per 1,000 requests


def starlette_app() -> Starlette:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/items/{resource_id}", hello)])


def guarded(job: JobConfig, valkey_url: str | None) -> tuple[Starlette, GuardRuntime]:
    app = starlette_app()
    registry = RouteRegistry()
    registry.register("/items/{resource_id}", job, methods=["GET"])
    runtime = GuardRuntime(
        GuardSettings(_env_file=None, valkey_url=valkey_url, metrics_path="", key_prefix="bench-rl")  # type: ignore[call-arg]
    )
    install(app, registry, runtime=runtime)
    return app, runtime


SCOPES = [make_scope("GET", f"/items/{i}") for i in range(KEYS)]


async def us_per_request(app: Any, seconds: float) -> tuple[float, Counter[int]]:
    """Median of 5 rounds, each at most seconds/5 (after a 200-request warm-up)."""
    statuses: Counter[int] = Counter()
    for i in range(200):
        await call(app, SCOPES[i % KEYS])
    rounds = []
    for _ in range(5):
        gc.collect()
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 5
        while time.perf_counter() < deadline:
            for i in range(100):
                statuses[await call(app, SCOPES[(n + i) % KEYS])] += 1
            n += 100
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return sorted(rounds)[2], statuses


async def valkey_counts(
    server: ValkeyServer, app: Any, scope_index: int | None, n: int = 300
) -> tuple[float, float, float]:
    """(commands incl. inside scripts, commands sent, reads) per request over n requests."""

    def pick(i: int) -> dict[str, Any]:
        return SCOPES[scope_index if scope_index is not None else i % KEYS]

    before = server.snapshot()
    for i in range(n):
        await call(app, pick(i))
    after = server.snapshot()
    idle = server.snapshot()
    c0, c1 = commandstats(before), commandstats(after)
    commands = sum(c1[k] - c0.get(k, 0) for k in c1 if k != "info")
    reads = int(after["total_reads_processed"]) - int(before["total_reads_processed"])
    reads -= int(idle["total_reads_processed"]) - int(after["total_reads_processed"])
    with Monitor(server.port) as mon:
        for i in range(n):
            await call(app, pick(i))
    return commands / n, sum(mon.top.values()) / n, reads / n


def fmt_status(statuses: Counter[int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))


async def main(seconds: float, server: ValkeyServer) -> None:
    bare_us, _ = await us_per_request(starlette_app(), seconds)
    print(f"bare Starlette: {bare_us:.1f} µs/request\n")
    print(
        "| algorithm | memory µs | vs bare | Valkey µs | vs bare | Valkey cmds/req (sent) | reads/req | statuses (memory; Valkey) |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for name, raw in ALGOS.items():
        job = JobConfig(endpoint_name="items", rate_limit={"enabled": True, **raw})
        mem_app, mem_rt = guarded(job, None)
        mem_us, mem_st = await us_per_request(mem_app, seconds)
        vk_app, vk_rt = guarded(job, server.url)
        vk_us, vk_st = await us_per_request(vk_app, seconds)
        cmds, sent, reads = await valkey_counts(server, vk_app, None)
        await mem_rt.shutdown()
        await vk_rt.shutdown()
        print(
            f"| {name} | {mem_us:.1f} | {mem_us / bare_us:.2f}x | {vk_us:.1f} | {vk_us / bare_us:.2f}x | "
            f"{cmds:g} ({sent:g}) | {reads:g} | {fmt_status(mem_st)}; {fmt_status(vk_st)} |"
        )

    print("\nCache hit on a route with a rate limit (token bucket) and the cache (same request repeated)\n")
    print("| backend | µs/request | Valkey cmds/req (sent) | reads/req |")
    print("|---|---:|---|---:|")
    job = JobConfig(
        endpoint_name="items",
        rate_limit={"enabled": True, **ALGOS["token_bucket"]},
        cache={"enabled": True, "shared": True, "default": {"cache_ttl": 60}},
    )
    for backend, url in (("memory", None), ("valkey", server.url)):
        app, runtime = guarded(job, url)
        scope = SCOPES[7]
        assert await call(app, scope) == 200  # the miss that fills the entry
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(300):
                await call(app, scope)
            times.append((time.perf_counter() - start) / 300 * 1e6)
        counted = await valkey_counts(server, app, 7) if url else None
        await runtime.shutdown()
        counts = f"{counted[0]:g} ({counted[1]:g}) | {counted[2]:g}" if counted else "- | -"
        print(f"| {backend} | {sorted(times)[2]:.1f} | {counts} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time bound of each measurement")
    args = parser.parse_args()
    valkey_server = start_valkey()
    try:
        asyncio.run(main(args.seconds, valkey_server))
    finally:
        valkey_server.stop()
