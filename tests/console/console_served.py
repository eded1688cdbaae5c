"""A small guarded Starlette app with the operator console on, for the console's tests.

Routes: a per-item fixed-window limit (429s, several limited keys), a cached route (hit ratio), a
JWT route (401s), a route that charges credits, a route that publishes events (no Pulsar: the outbox), a route behind a circuit breaker that always fails
(the circuit opens). Served by tests/console/test_console_browser.py under a real uvicorn; the
console's token comes from the environment (ASGI_GUARD_CONSOLE_TOKEN, as a user would set it).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import (
    CacheConfig,
    CircuitBreakerConfig,
    DefaultCacheConfig,
    FixedWindowConfig,
    PulsarLabelingConfig,
    RateLimitAlgo,
    RateLimitConfig,
    SecurityConfig,
)
from asgi_guard.stages.credits import Anonymous, credit_store

ITEMS = JobConfig(
    endpoint_name="items",
    rate_limit=RateLimitConfig(
        enabled=True, algo=RateLimitAlgo.fixed_window, fixed_window=FixedWindowConfig(limit=5, window=10**9)
    ),
)
CACHED = JobConfig(
    endpoint_name="catalog", cache=CacheConfig(enabled=True, default=DefaultCacheConfig(cache_ttl=2))
)
SECURE = JobConfig(endpoint_name="account", security=SecurityConfig(auth_type_required="jwt"))
PAID = JobConfig(endpoint_name="report", required_credits=1)
ORDERS = JobConfig(  # no pulsar_url: each event waits in the local outbox (depth and age grow)
    endpoint_name="orders",
    pulsar_labeling=PulsarLabelingConfig(
        enabled=True, job_topic="persistent://public/default/console-orders"
    ),
)
FLAKY = JobConfig(
    endpoint_name="flaky",
    circuit_breaker=CircuitBreakerConfig(
        enabled=True, circuit_breaker_threshold=3, circuit_breaker_timeout=600
    ),
)


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True, **request.path_params})


async def catalog(request: Request) -> Response:
    return JSONResponse(
        {"page": request.query_params.get("page", "1")}, headers={"cache-control": "max-age=2"}
    )


async def broken(request: Request) -> Response:
    return JSONResponse({"error": "upstream down"}, status_code=502)


def build(settings: GuardSettings | None = None) -> tuple[Starlette, GuardRuntime, RouteRegistry]:
    registry = RouteRegistry()
    registry.register("/items/{resource_id}", ITEMS, methods=["GET"])
    registry.register("/catalog", CACHED, methods=["GET"])
    registry.register("/account", SECURE, methods=["GET"])
    registry.register("/report", PAID, methods=["GET"])
    registry.register("/flaky", FLAKY, methods=["GET"])
    registry.register("/orders", ORDERS, methods=["POST"])
    app = Starlette(
        routes=[
            Route("/items/{resource_id}", ok),
            Route("/catalog", catalog),
            Route("/account", ok),
            Route("/report", ok),
            Route("/flaky", broken),
            Route("/orders", ok, methods=["POST"]),
        ]
    )
    runtime = GuardRuntime(settings or GuardSettings(jwt_secret="x" * 32))

    async def grant() -> None:
        await credit_store(runtime.backend).grant(Anonymous("127.0.0.1"), 50)

    runtime.on_startup(grant)
    install(app, registry, runtime=runtime)
    return app, runtime, registry


def _served() -> Any:
    return build()[0]


app = _served()
