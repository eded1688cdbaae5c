"""One OS process of the cross-process replay test: POST once through the stack, print the outcome."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.stages.idempotency.config import IdempotencyConfig


async def main(url: str, prefix: str, key: str, body: str) -> None:
    async def create(request: Request) -> Response:
        return JSONResponse({"pid": os.getpid(), "body": (await request.body()).decode()}, status_code=201)

    registry = RouteRegistry()
    registry.register(
        "/orders", JobConfig(endpoint_name="orders", idempotency=IdempotencyConfig(enabled=True))
    )
    settings = GuardSettings(
        valkey_url=url,
        key_prefix=prefix,
        pooling={"socket_timeout": 5.0, "connect_timeout": 5.0},
        _env_file=None,  # type: ignore[call-arg]
    )
    app = GuardMiddleware(
        Starlette(routes=[Route("/orders", create, methods=["POST"])]), registry=registry, settings=settings
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        response = await client.post("/orders", content=body, headers={"idempotency-key": key})
    await app.runtime.shutdown()
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "status": response.status_code,
                "json": response.json(),
                "replayed": response.headers.get("idempotent-replayed"),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
