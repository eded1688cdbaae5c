"""A guarded app for the two-process tests (purge, endless SSE), run by uvicorn: `uvicorn purge_app:app`.

Reads ASGI_GUARD_VALKEY_URL and ASGI_GUARD_KEY_PREFIX (GuardSettings) and PURGE_TOKEN."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import CacheConfig
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.cache import add_tags, purge_endpoint

CALLS = {"n": 0}


async def item(request: Request) -> Response:
    CALLS["n"] += 1
    resource_id = request.path_params["resource_id"]
    add_tags(request, f"owner-{int(resource_id) % 2}")
    return JSONResponse(
        {"item": resource_id, "pid": os.getpid(), "call": CALLS["n"]},
        headers={"cache-tag": f"item-{resource_id}"},
    )


async def events(request: Request) -> Response:
    """An endless Server-Sent Events stream (one event every 50 ms until the client leaves)."""

    async def stream() -> AsyncIterator[bytes]:
        n = 0
        while True:
            yield f"data: {os.getpid()} {n}\n\n".encode()
            n += 1
            await asyncio.sleep(0.05)

    return StreamingResponse(stream(), media_type="text/event-stream")


settings = GuardSettings()
runtime = GuardRuntime(settings)
registry = RouteRegistry()
registry.register("/items/{resource_id}", JobConfig(endpoint_name="items", cache=CacheConfig(enabled=True)))
registry.register("/events", JobConfig(endpoint_name="events", cache=CacheConfig(enabled=True)))
app = Starlette(
    routes=[
        Route("/items/{resource_id}", item),
        Route("/events", events),
        Route("/_cache/purge", purge_endpoint(runtime, os.environ["PURGE_TOKEN"]), methods=["POST"]),
    ]
)
install(app, registry, settings, runtime=runtime)
