"""A route added while a request is in flight is bound before that request reaches the router.

Found by the second attack round: the per-request "routes changed?" check runs in the guard's
outermost middleware; a request past it that then awaits in an inner middleware (a session store, a
database lookup) while the app adds a route was routed to the new route's unbound handle: its own
`@guard` policy (or deny mode) did not apply. The routes list now binds each change as it is made.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from binding.bindkit import JWT, settings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import JobConfig, guard, install

RAN: list[str] = []


class Pause:
    """An inner pure-ASGI middleware that awaits (like a session store) until told to go on."""

    entered: asyncio.Event
    go: asyncio.Event

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/late":
            Pause.entered.set()
            await Pause.go.wait()
        await self.app(scope, receive, send)


async def test_a_route_added_while_a_request_awaits_inside_is_bound() -> None:
    async def public(request: Request) -> PlainTextResponse:
        return PlainTextResponse("public")

    @guard(JobConfig(**JWT))
    async def secret(request: Request) -> PlainTextResponse:
        RAN.append("secret")
        return PlainTextResponse("secret")

    RAN.clear()
    Pause.entered, Pause.go = asyncio.Event(), asyncio.Event()
    app = Starlette(routes=[Route("/page", public)], middleware=[Middleware(Pause)])
    install(app, None, settings())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        assert (await c.get("/page")).status_code == 200  # serving: start-up and binding done
        request = asyncio.create_task(c.get("/late"))
        await Pause.entered.wait()  # past the guard's check, waiting in the inner middleware
        app.router.routes.append(Route("/late", secret))
        Pause.go.set()
        response = await request
    assert response.status_code == 401
    assert RAN == []
