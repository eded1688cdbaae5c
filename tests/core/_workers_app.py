"""The app of the multi-worker test: the embedded backend (no Valkey), one rate-limited route."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import RateLimitConfig


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


registry = RouteRegistry()
registry.register(
    "/limited",
    JobConfig(
        endpoint_name="limited",
        rate_limit=RateLimitConfig(
            enabled=True,
            algo="fixed_window",  # type: ignore[arg-type]
            fixed_window={"limit": 3, "window": 10**9},  # type: ignore[arg-type]  # a window no test crosses
            key_by=["route", "ip"],
        ),
    ),
)
app = Starlette(routes=[Route("/limited", ok)])
install(app, registry, GuardSettings())
