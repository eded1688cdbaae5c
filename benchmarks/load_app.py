"""The app run_load.py serves under uvicorn: the same three routes on either stack, chosen by env.

examples/fastapi_app.py cannot carry the load mix (it has no anonymous route and funds one demo user),
so this app declares, identically on both stacks:

- GET  /public/{item_id}  anonymous read: limit per client IP, shared cache (10 s)
- GET  /items/{item_id}   authenticated read (JWT HS256, scope items:read): limit per user, per-user cache (30 s)
- POST /jobs/{resource_id} credit-charged job (JWT, scope jobs:write): fixed window 5 per 10 s per user and
  resource (429), 1 credit (402 when the balance is out), an event after success, metrics, tracing

BENCH_STACK=guard: asgi-guard via `install` (events go to the local outbox: no Pulsar here).
BENCH_STACK=peer: an `async def` pyjwt dependency + slowapi + fastapi-cache2 + prometheus-fastapi-
instrumentator + OpenTelemetryMiddleware, with hand-written credits (a dict, or a Lua script on Valkey)
and events written to a sqlite outbox by a background task.

Environment: BENCH_STACK, BENCH_GUARD_POOLING (JSON for asgi-guard's GuardSettings.pooling), BENCH_VALKEY_URL (empty = memory), BENCH_JWT_SECRET, BENCH_FUNDED (users
user0..user{N-1} and hot-user get BENCH_CREDITS credits), BENCH_OUTBOX (sqlite path), BENCH_TRACING (1: an
SDK TracerProvider with a BatchSpanProcessor into a counting exporter, on both stacks).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import jwt
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel

STACK = os.environ.get("BENCH_STACK", "guard")
VALKEY_URL = os.environ.get("BENCH_VALKEY_URL") or None
SECRET = os.environ.get("BENCH_JWT_SECRET", "bench-secret-bench-secret-bench-secret")
FUNDED = [f"user{i}" for i in range(int(os.environ.get("BENCH_FUNDED", "200")))] + ["hot-user"]
CREDITS = int(os.environ.get("BENCH_CREDITS", "1000000"))
OUTBOX = os.environ.get("BENCH_OUTBOX", "/tmp/asgi-guard-bench-outbox.sqlite3")
TRACING = os.environ.get("BENCH_TRACING", "1") == "1"
GUARD_POOLING = os.environ.get(
    "BENCH_GUARD_POOLING"
)  # JSON PoolingConfig fields; unset: asgi-guard's defaults
JOB_TOPIC = "persistent://public/default/bench-jobs"


class JobIn(BaseModel):
    resource_id: str
    payload: str = ""


def install_tracing() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        """Drops spans after counting them: the pipeline runs, nothing piles up."""

        exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            CountingExporter.exported += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(CountingExporter()))
    trace.set_tracer_provider(provider)


if TRACING:
    install_tracing()


# -- asgi-guard -------------------------------------------------------------------------------------
def build_guard() -> Any:
    from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install

    app = FastAPI(title="bench (asgi-guard)", telemetry={"tracing": False})

    @app.get("/public/{item_id}")
    async def public(item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "public": True}

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"item_id": item_id}

    @app.post("/jobs/{resource_id}")
    async def job(resource_id: str, body: JobIn) -> dict[str, Any]:
        return {"status": "accepted", "resource_id": resource_id}

    registry = RouteRegistry()
    registry.register(
        "/public/{item_id}",
        JobConfig(
            endpoint_name="public",
            rate_limit={
                "enabled": True,
                "algo": "fixed_window",
                "fixed_window": {"limit": 1_000_000, "window": 60},
            },
            cache={"enabled": True, "shared": True, "default": {"cache_ttl": 10}},
            tracing={"function_name": "public", "trace_label": "public"},
            metrics={"histogram_name": "bench_public_latency_seconds"},
        ),
        methods=["GET"],
    )
    registry.register(
        "/items/{item_id}",
        JobConfig(
            endpoint_name="item",
            security={"auth_type_required": "jwt", "user_permissions_required": ["items:read"]},
            rate_limit={
                "enabled": True,
                "algo": "fixed_window",
                "fixed_window": {"limit": 100_000, "window": 60},
            },
            cache={"enabled": True, "default": {"cache_ttl": 30}},
            tracing={"function_name": "item", "trace_label": "item"},
            metrics={"histogram_name": "bench_item_latency_seconds"},
        ),
        methods=["GET"],
    )
    registry.register(
        "/jobs/{resource_id}",
        JobConfig(
            endpoint_name="job",
            required_credits=1,
            security={"auth_type_required": "jwt", "user_permissions_required": ["jobs:write"]},
            rate_limit={"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 5, "window": 10}},
            pulsar_labeling={"enabled": True, "job_topic": JOB_TOPIC, "event_label": "job.completed"},
            tracing={"function_name": "job", "trace_label": "job"},
            metrics={"histogram_name": "bench_job_latency_seconds"},
        ),
        methods=["POST"],
    )
    extra: dict[str, Any] = {}
    if GUARD_POOLING:
        extra["pooling"] = json.loads(GUARD_POOLING)
    settings = GuardSettings(  # type: ignore[call-arg]
        _env_file=None,
        **extra,
        valkey_url=VALKEY_URL,
        jwt_secret=SECRET,
        metrics_path="/metrics",
        outbox_path=OUTBOX,
        key_prefix=os.environ.get("ASGI_GUARD_KEY_PREFIX", "bench"),
    )
    runtime = GuardRuntime(settings)
    if VALKEY_URL is None:
        runtime.on_startup(lambda: seed_guard_memory_credits(runtime))
    # on Valkey, run_load.py funds the users beforehand with the `asgi-guard credits grant` CLI
    install(app, registry, runtime=runtime)
    return app


async def seed_guard_memory_credits(runtime: Any) -> None:
    """The embedded backend lives in this process, so only this process can fund its users. The public
    API has no credits call (the pinned way is the `asgi-guard credits` CLI, which reaches Valkey only),
    so this looks the store up where the package keeps it, old layout first; if it has moved elsewhere,
    the users stay unfunded and run_load.py reports the POSTs as 402."""
    for name in ("asgi_guard.credits", "asgi_guard.stages.credits", "asgi_guard.stages.credits.store"):
        with contextlib.suppress(ImportError):
            factory = getattr(importlib.import_module(name), "credit_store", None)
            if factory is not None:
                store = factory(runtime.backend)
                for user in FUNDED:
                    await store.grant(user, CREDITS)
                return
    print("load_app: no credit store found; memory-backend users stay unfunded", flush=True)


# -- the peer stack ---------------------------------------------------------------------------------
class SqliteOutbox:
    """What a FastAPI user writes for events without a broker: rows in sqlite, from a background task."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, topic TEXT, key TEXT, payload TEXT)"
        )
        self._lock = threading.Lock()

    def append(self, topic: str, key: str, payload: str) -> None:  # runs in the threadpool
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO outbox (topic, key, payload) VALUES (?, ?, ?)", (topic, key, payload)
            )


CHARGE_LUA = """
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if balance < tonumber(ARGV[1]) then return -1 end
return redis.call('DECRBY', KEYS[1], ARGV[1])
"""


def build_peer() -> Any:
    from fastapi_cache import FastAPICache
    from fastapi_cache.decorator import cache
    from prometheus_fastapi_instrumentator import Instrumentator
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.util import get_remote_address

    redis_url = VALKEY_URL.replace("valkey://", "redis://") if VALKEY_URL else None
    client: Any = None
    balances: dict[str, int] = {}
    outbox = SqliteOutbox(OUTBOX)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal client
        if redis_url:
            from fastapi_cache.backends.redis import RedisBackend
            from redis import asyncio as aioredis

            client = aioredis.from_url(redis_url)
            FastAPICache.init(RedisBackend(client), prefix="bench-peer")
            await client.mset({f"bench-peer:credits:{u}": CREDITS for u in FUNDED})
        else:
            from fastapi_cache.backends.inmemory import InMemoryBackend

            FastAPICache.init(InMemoryBackend(), prefix="bench-peer")
            balances.update({u: CREDITS for u in FUNDED})
        yield
        if client is not None:
            await client.aclose()

    def user_key(request: Request) -> str:
        return f"{request.state.sub}:{request.path_params.get('resource_id') or request.path_params.get('item_id')}"

    limiter = Limiter(
        key_func=get_remote_address, storage_uri=redis_url or "memory://", strategy="fixed-window"
    )
    app = FastAPI(title="bench (peer)", telemetry={"tracing": False}, lifespan=lifespan)
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]

    def principal(scope: str) -> Any:
        async def dependency(request: Request, authorization: str = Header(default="")) -> dict[str, Any]:
            kind, _, token = authorization.partition(" ")
            if kind.lower() != "bearer" or not token:
                raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
            try:
                claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
            except jwt.PyJWTError as exc:
                raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"}) from exc
            if scope not in str(claims.get("scope", "")).split():
                raise HTTPException(403, "insufficient scope")
            request.state.sub = claims["sub"]
            return claims

        return dependency

    async def charge(user: str, amount: int = 1) -> bool:
        if client is not None:
            return int(await client.eval(CHARGE_LUA, 1, f"bench-peer:credits:{user}", amount)) >= 0
        if balances.get(user, 0) < amount:
            return False
        balances[user] -= amount
        return True

    @app.get("/public/{item_id}")
    @limiter.limit("1000000/minute")
    @cache(expire=10)
    async def public(item_id: str, request: Request, response: Response) -> dict[str, Any]:
        return {"item_id": item_id, "public": True}

    @app.get("/items/{item_id}")
    @limiter.limit("100000/minute", key_func=user_key)
    @cache(expire=30)
    async def item(
        item_id: str,
        request: Request,
        response: Response,
        user: dict[str, Any] = Depends(principal("items:read")),
    ) -> dict[str, Any]:
        return {"item_id": item_id}

    @app.post("/jobs/{resource_id}")
    @limiter.limit("5/10 seconds", key_func=user_key)
    async def job(
        resource_id: str,
        body: JobIn,
        request: Request,
        background: BackgroundTasks,
        user: dict[str, Any] = Depends(principal("jobs:write")),
    ) -> dict[str, Any]:
        if not await charge(user["sub"]):
            raise HTTPException(402, "not enough credits")
        result = {"status": "accepted", "resource_id": resource_id}
        background.add_task(
            outbox.append,
            JOB_TOPIC,
            resource_id,
            f'{{"event": "job.completed", "resource_id": "{resource_id}"}}',
        )
        return result

    Instrumentator().instrument(app).expose(app)
    if TRACING:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware(app)
    return app


app = build_guard() if STACK == "guard" else build_peer()

if __name__ == "__main__":  # pragma: no cover - run_load.py starts it with uvicorn
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("BENCH_PORT", "8000")))
