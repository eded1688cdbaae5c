"""Bounded bursts of concurrent requests in one process against a private valkey-server: how many
get a 503 (a backend call past `socket_timeout`, or no pooled connection within `pool_timeout`) for
a few `socket_timeout` values, and how long the slowest backend call took.

The route: a fixed-window limit (never reached) and a shared cache, so a miss is the fused
limit + lookup call, then the fill. Each burst is `--burst` requests on new paths (all misses),
`--rounds` times per value. `--busy N` runs N busy-loop processes alongside (bounded by the run),
standing in for a loaded machine.

Run:  python benchmarks/valkey_burst.py [--burst 150] [--rounds 5] [--busy 0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
from _services import start_valkey  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install  # noqa: E402
from asgi_guard.config import CacheConfig, PoolingConfig, RateLimitConfig  # noqa: E402
from asgi_guard.state import ValkeyBackend  # noqa: E402

JOB = JobConfig(
    endpoint_name="burst",
    rate_limit=RateLimitConfig(
        enabled=True,
        algo="fixed_window",  # type: ignore[arg-type]
        fixed_window={"limit": 1_000_000_000, "window": 60},  # type: ignore[arg-type]
        key_by=["header:x-n"],
    ),
    cache=CacheConfig(enabled=True, shared=True),
)


POOL_TIMEOUT = [PoolingConfig().pool_timeout]  # --pool-timeout; a call's wait is bounded by both


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def rounds(url: str, socket_timeout: float, burst: int, count: int, seq: list[int]) -> dict[str, Any]:
    pooling = PoolingConfig(socket_timeout=socket_timeout, pool_timeout=min(socket_timeout, POOL_TIMEOUT[0]))
    backend = ValkeyBackend(url, pooling, key_prefix="burst")
    slowest = 0.0
    reasons: collections.Counter[str] = collections.Counter()
    bounded = backend._bounded

    async def timed(awaitable: Any, timeout: float | None, raw: bool) -> Any:
        nonlocal slowest
        start = time.perf_counter()
        try:
            return await bounded(awaitable, timeout, raw)
        except Exception as exc:
            reasons[str(exc).split(" (", 1)[0][:70]] += 1
            raise
        finally:
            slowest = max(slowest, time.perf_counter() - start)

    backend._bounded = timed  # type: ignore[method-assign]
    registry = RouteRegistry()
    registry.register("/items/{n}", JOB, methods=["GET"])
    app = Starlette(routes=[Route("/items/{n}", ok)])
    settings = GuardSettings(_env_file=None, valkey_url=url, key_prefix="burst", metrics_path="")  # type: ignore[call-arg]
    guard = install(app, registry, settings, backend=backend)
    statuses: collections.Counter[int | str] = collections.Counter()
    walls = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.get("/items/warm", headers={"x-n": "w"})
        for _ in range(count):
            start = time.perf_counter()
            base = seq[0]
            seq[0] += burst
            got = await asyncio.gather(
                *(http.get(f"/items/{base + i}", headers={"x-n": str(i % 50)}) for i in range(burst))
            )
            walls.append(time.perf_counter() - start)
            statuses.update(r.status_code for r in got)
            for r in got:
                if r.status_code == 503:
                    reasons["503: " + r.text[:160]] += 1
            statuses.update(  # the cache failed open: served, not cached
                "cache-unavailable" for r in got if "unavailable" in r.headers.get("cache-status", "")
            )
    await guard.runtime.shutdown()
    return {
        "statuses": dict(statuses),
        "slowest_call_s": round(slowest, 3),
        "burst_s": round(max(walls), 3),
        "reasons": dict(reasons),
    }


async def main(burst: int, count: int, busy: int, values: list[float]) -> None:
    server = start_valkey()
    hogs = [
        subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()+600\nwhile time.time()<t: pass"])
        for _ in range(busy)
    ]
    seq = [0]
    try:
        print(f"burst {burst} x {count} rounds, {busy} busy processes")
        print(f"pool_timeout = min(socket_timeout, {POOL_TIMEOUT[0]})")
        print("| socket_timeout s | statuses | slowest backend call s | slowest burst s |")
        print("|---:|---|---:|---:|")
        for value in values:
            row = await rounds(server.url, value, burst, count, seq)
            print(
                f"| {value:g} | {row['statuses']} | {row['slowest_call_s']} | {row['burst_s']} |", flush=True
            )
            for reason, n in sorted(row["reasons"].items(), key=lambda kv: -kv[1])[:4]:
                print(f"    {n} x {reason}", flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--busy", type=int, default=0, help="busy-loop processes alongside (a loaded machine)"
    )
    parser.add_argument("--values", default="0.1,0.25,0.5,1.0", help="socket_timeout values (s)")
    parser.add_argument(
        "--pool-timeout", type=float, help="default: PoolingConfig's (never above socket_timeout)"
    )
    a = parser.parse_args()
    if a.pool_timeout is not None:
        POOL_TIMEOUT[0] = a.pool_timeout
    asyncio.run(main(a.burst, a.rounds, a.busy, [float(v) for v in a.values.split(",")]))
