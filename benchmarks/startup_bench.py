"""Start-up time and memory for N registered routes (default 10,000): per-route build cost.

Measures, in a fresh process per N, with the memory backend and no tracer provider:
- `configs`: building N JobConfigs (the app's own code; pydantic validation);
- `register`: `RouteRegistry.register` for each;
- `build`: `install` + the first request (the middleware stack and every route's pipeline are built,
  the runtime starts);
and the RSS growth of register + build (the guard's part), in MiB and bytes per route; with
`--tracemalloc`, also the Python memory the guard still holds and its peak (tracemalloc: slower, so
its times are not comparable). Routes sharing a policy are built on their first request (the
start-up builds one route per distinct stage configuration): `later_first_request_ms` is that
deferred cost for one route, `later_request_ms` the same route's next request.

Run:  python benchmarks/startup_bench.py [--routes 10000] [--kind full|plain|shared] [--tracemalloc]
  full:   each route its own JobConfig with JWT, a rate limit, a cache, tracing labels and a histogram
  shared: one such JobConfig object for every route (apps that reuse a policy)
  plain:  JobConfig() (telemetry only)
Target (issue 16): 10,000 routes start in under 0.5 s and under 20 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def config_for(kind: str, i: int) -> Any:
    from asgi_guard import JobConfig

    if kind == "plain":
        return JobConfig()
    return JobConfig(
        endpoint_name=f"route{i}",
        security={"auth_type_required": "jwt", "user_permissions_required": ["items:read"]},
        rate_limit={"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 100, "window": 60}},
        cache={"enabled": True, "default": {"cache_ttl": 60}},
        tracing={"function_name": f"route{i}", "trace_label": f"route{i}"},
        metrics={"histogram_name": "bench_route_latency_seconds"},
    )


async def run(n: int, kind: str, traced: bool = False) -> dict[str, Any]:
    from _asgi import call, make_scope
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from asgi_guard import GuardRuntime, GuardSettings, RouteRegistry, install

    async def endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    gc.collect()
    t0 = time.perf_counter()
    if kind == "shared":
        one = config_for("full", 0)
        configs = [one] * n
    else:
        configs = [config_for(kind, i) for i in range(n)]
    t_configs = time.perf_counter() - t0
    routes = [Route(f"/svc{i}/items/{{item_id}}", endpoint) for i in range(n)]
    gc.collect()
    rss0 = rss_bytes()
    if traced:
        tracemalloc.start()
    t1 = time.perf_counter()
    c1 = time.process_time()
    registry = RouteRegistry()
    for i, config in enumerate(configs):
        registry.register(f"/svc{i}/items/{{item_id}}", config, methods=["GET"])
    t_register = time.perf_counter() - t1
    app = Starlette(routes=routes)
    runtime = GuardRuntime(GuardSettings(_env_file=None, jwt_secret="x" * 32))  # type: ignore[call-arg]
    t2 = time.perf_counter()
    install(app, registry, runtime=runtime)
    status = await call(app, make_scope("GET", "/svc0/items/1"))  # anonymous: a 401 from the JWT stage
    t_build = time.perf_counter() - t2
    cpu = time.process_time() - c1
    gc.collect()
    rss1 = rss_bytes()
    memory: dict[str, Any] = {}
    if traced:
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        memory = {"traced_mib": round(held / 2**20, 1), "traced_peak_mib": round(peak / 2**20, 1)}
    t3 = time.perf_counter()
    await call(app, make_scope("GET", "/svc1/items/1"))  # built on this request (early in the
    # router's list: Starlette tries routes in order, ~0.5 us each, ms for the last of 10,000)
    t4 = time.perf_counter()
    await call(app, make_scope("GET", "/svc1/items/1"))
    t5 = time.perf_counter()
    await runtime.shutdown()
    return {
        "routes": n,
        "kind": kind,
        "configs_s": round(t_configs, 3),
        "register_s": round(t_register, 3),
        "build_s": round(t_build, 3),
        "guard_start_s": round(t_register + t_build, 3),
        "guard_start_cpu_s": round(cpu, 3),  # this process's CPU time: steadier on a loaded machine
        "guard_rss_mib": round((rss1 - rss0) / 2**20, 1),
        "bytes_per_route": (rss1 - rss0) // n,
        "first_status": status,
        **memory,
        "later_first_request_ms": round((t4 - t3) * 1000, 2),
        "later_request_ms": round((t5 - t4) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--kind", choices=("full", "plain", "shared"), default="full")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the register + build phases")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the guard's Python memory")
    args = parser.parse_args()
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        result = asyncio.run(run(args.routes, args.kind, args.tracemalloc))
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False))
    else:
        result = asyncio.run(run(args.routes, args.kind, args.tracemalloc))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
