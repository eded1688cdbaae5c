"""Small apps for the rate-limit tests."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.state import Backend


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def limited_app(
    rate_limit: dict[str, Any],
    settings: GuardSettings | None = None,
    backend: Backend | None = None,
    path: str = "/items/{resource_id}",
    **job: Any,
) -> GuardMiddleware:
    """A Starlette app behind the stack, with one rate-limited route at `path`."""
    registry = RouteRegistry()
    registry.register(
        path, JobConfig(endpoint_name="items", rate_limit={"enabled": True, **rate_limit}, **job)
    )
    app = Starlette(routes=[Route(path, ok, methods=["GET", "POST"])])
    return GuardMiddleware(app, registry=registry, settings=settings or GuardSettings(), backend=backend)
