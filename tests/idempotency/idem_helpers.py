"""Helpers for the idempotency tests: backends, a fake principal stage, an app builder, a handler."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.stages.idempotency.config import IdempotencyConfig
from asgi_guard.state import Backend


def idempotent(name: str = "orders", **options: Any) -> JobConfig:
    return JobConfig(endpoint_name=name, idempotency=IdempotencyConfig(enabled=True, **options))


def guard(backend: Backend, routes: list[Any], configs: dict[str, JobConfig], key_prefix: str = "ag") -> Any:
    registry = RouteRegistry()
    for path, config in configs.items():
        registry.register(path, config)
    # metrics are opt-in (off by default); these tests read the counters, so they collect them
    settings = GuardSettings(key_prefix=key_prefix, metrics_collect=True, _env_file=None)  # type: ignore[call-arg]
    return GuardMiddleware(Starlette(routes=routes), registry=registry, settings=settings, backend=backend)


class Orders:
    """A handler that counts its runs; `statuses` scripts the status of each run (then 201)."""

    def __init__(self, *statuses: int, gate: asyncio.Event | None = None, fail_first: bool = False) -> None:
        self.calls = 0
        self.statuses = list(statuses)
        self.gate = gate
        self.started = asyncio.Event()
        self.fail_first = fail_first

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        call = self.calls
        body = await request.body()
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_first and call == 1:
            raise RuntimeError("handler crashed")
        status = self.statuses.pop(0) if self.statuses else 201
        return JSONResponse(
            {"call": call, "path": request.url.path, "body": body.decode()},
            status_code=status,
            headers={"location": f"/orders/{call}"},
        )
