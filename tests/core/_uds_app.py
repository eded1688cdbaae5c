"""The app the unix-socket tests serve (`python -m uvicorn _uds_app:app --uds PATH`).

Trusted proxies come from the environment (ASGI_GUARD_TRUSTED_PROXIES, a JSON list), as in production.
"""

from __future__ import annotations

import itertools

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install

_orders = itertools.count(1)


async def limited(request: Request) -> JSONResponse:
    return JSONResponse({"client": request.state.guard.client_ip})


async def order(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {"order": next(_orders), "body": body.decode(), "client": request.state.guard.client_ip}
    )


app = Starlette(routes=[Route("/limited", limited), Route("/orders", order, methods=["POST"])])
registry = RouteRegistry()
registry.register(
    "/limited",
    JobConfig(
        rate_limit={"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 2, "window": 10**9}}  # guardkit.UNCROSSED_WINDOW
    ),
    methods=["GET"],
)
registry.register("/orders", JobConfig(idempotency={"enabled": True}), methods=["POST"])
install(app, registry, GuardSettings(_env_file=None))  # type: ignore[call-arg]
