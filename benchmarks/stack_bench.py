"""Per-request cost, side by side, in-process (no sockets):

- bare Starlette, and asgi-guard with only a rate limit (embedded backend): target <= 1.5x bare;
- the add-on stack a FastAPI user assembles today (pyjwt dependency, slowapi, fastapi-cache2,
  prometheus-fastapi-instrumentator, OpenTelemetry ASGI middleware) against asgi-guard with the same
  features (JWT, token bucket, cache, metrics, tracing): target <= 1/3 of the add-on stack;
- both again on a real valkey-server (started here) when `--valkey` is given.

Run: python benchmarks/stack_bench.py [--valkey] [--requests 3000]
Bounded: each measurement stops after 5 rounds or 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
from _asgi import make_scope, per_request_us

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install

SECRET = "bench-secret-bench-secret-bench-secret"
TOKEN = jwt.encode(
    {"sub": "bench-user", "exp": int(time.time()) + 3600, "scope": "items:read"}, SECRET, "HS256"
)
AUTH = [(b"authorization", f"Bearer {TOKEN}".encode())]
BIG = 10_000_000


def bare_starlette() -> Starlette:
    async def item(request: Any) -> JSONResponse:
        return JSONResponse({"item_id": request.path_params["item_id"]})

    return Starlette(routes=[Route("/items/{item_id}", item)])


def guard_limit_only(valkey_url: str | None) -> Starlette:
    app = bare_starlette()
    registry = RouteRegistry()
    registry.register(
        "/items/{item_id}",
        JobConfig(
            rate_limit={
                "enabled": True,
                "algo": "token_bucket",
                "token_bucket": {"rate_limit": BIG, "refill_rate": BIG},
            }
        ),
        methods=["GET"],
    )
    install(app, registry, GuardSettings(valkey_url=valkey_url, metrics_path="", _env_file=None))  # type: ignore[call-arg]
    return app


def guard_full(valkey_url: str | None) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"item_id": item_id}

    registry = RouteRegistry()
    registry.register(
        "/items/{item_id}",
        JobConfig(
            endpoint_name="item",
            security={"auth_type_required": "jwt", "user_permissions_required": ["items:read"]},
            rate_limit={
                "enabled": True,
                "algo": "token_bucket",
                "token_bucket": {"rate_limit": BIG, "refill_rate": BIG},
            },
            cache={"enabled": True, "default": {"cache_ttl": 60}},
            tracing={"function_name": "item", "trace_label": "item"},
            metrics={"histogram_name": "bench_item_latency_seconds"},
        ),
        methods=["GET"],
    )
    settings = GuardSettings(valkey_url=valkey_url, jwt_secret=SECRET, _env_file=None)  # type: ignore[call-arg]
    install(app, registry, settings)
    return app


def addon_stack(valkey_url: str | None) -> FastAPI:
    """What users stack today: each add-on doing one concern."""
    from fastapi_cache import FastAPICache
    from fastapi_cache.backends.inmemory import InMemoryBackend
    from fastapi_cache.decorator import cache
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from prometheus_fastapi_instrumentator import Instrumentator
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.util import get_remote_address

    storage = valkey_url.replace("valkey://", "redis://") if valkey_url else "memory://"
    limiter = Limiter(key_func=get_remote_address, storage_uri=storage)
    app = FastAPI()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    if valkey_url:
        from fastapi_cache.backends.redis import RedisBackend
        from redis import asyncio as aioredis

        FastAPICache.init(RedisBackend(aioredis.from_url(storage)), prefix="bench")
    else:
        FastAPICache.init(InMemoryBackend(), prefix="bench")

    def principal(authorization: str = Header()) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                authorization.removeprefix("Bearer "), SECRET, algorithms=["HS256"]
            )
        except jwt.PyJWTError as exc:
            raise HTTPException(401) from exc
        if "items:read" not in claims.get("scope", "").split():
            raise HTTPException(403)
        return claims

    @app.get("/items/{item_id}")
    @limiter.limit(f"{BIG}/minute")
    @cache(expire=60)
    async def item(
        item_id: str, request: Request, user: dict[str, Any] = Depends(principal)
    ) -> dict[str, Any]:
        return {"item_id": item_id}

    Instrumentator().instrument(app)
    return OpenTelemetryMiddleware(app)  # type: ignore[return-value]


async def measure(name: str, app: Any, headers: list[tuple[bytes, bytes]], n: int) -> float:
    us, statuses = await per_request_us(app, lambda i: make_scope("GET", f"/items/{i % 50}", headers), n)
    ok = statuses.get(200, 0)
    print(f"| {name} | {us:.1f} | {ok}/{sum(statuses.values())} |")
    return us


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--valkey", action="store_true", help="also measure on a real valkey-server")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    n = args.requests
    print("| stack | µs per request | 200s |")
    print("|---|---:|---:|")
    bare = await measure("bare Starlette", bare_starlette(), [], n)
    limit = await measure("asgi-guard, rate limit only (memory)", guard_limit_only(None), [], n)
    addons = await measure(
        "add-on stack (pyjwt+slowapi+fastapi-cache2+instrumentator+OTel), memory", addon_stack(None), AUTH, n
    )
    full = await measure(
        "asgi-guard full stack (jwt+limit+cache+metrics+tracing), memory", guard_full(None), AUTH, n
    )
    print(f"\nlimit-only / bare = {limit / bare:.2f} (target <= 1.5)")
    print(f"full / add-on stack = {full / addons:.2f} (target <= 0.33)")
    if args.valkey:
        from asgi_guard_dev.valkey import start_standalone

        with start_standalone() as server:
            print("\n| stack (valkey) | µs per request | 200s |")
            print("|---|---:|---:|")
            addons_v = await measure(
                "add-on stack, Redis/Valkey storage", addon_stack(server.url), AUTH, n // 3
            )
            full_v = await measure("asgi-guard full stack, Valkey", guard_full(server.url), AUTH, n // 3)
            print(f"\nfull / add-on stack on Valkey = {full_v / addons_v:.2f} (target <= 0.33)")


if __name__ == "__main__":
    asyncio.run(main())
