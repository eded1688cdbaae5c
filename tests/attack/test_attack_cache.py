"""Attacks on the response cache (cross-client leaks held; see the report). What broke is recorded here."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from binding.bindkit import JWT, bearer, settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.credits import credit_store
from asgi_guard.state.memory import MemoryBackend


@pytest.mark.xfail(
    strict=True,
    reason="a stale-while-revalidate refresh re-runs the inner stages with the triggering request's "
    "context: on a route with credits the reservation of that (settled) request id is refused, "
    "the refresh fails quietly, and the stale entry is never revalidated",
)
async def test_stale_while_revalidate_refreshes_on_a_route_with_credits() -> None:
    counter = itertools.count()

    async def page(request: Request) -> JSONResponse:
        return JSONResponse(
            {"n": next(counter)}, headers={"cache-control": "max-age=1, stale-while-revalidate=30"}
        )

    registry = RouteRegistry()
    registry.register(
        "/page",
        JobConfig(endpoint_name="page", required_credits=1, cache={"enabled": True}, **JWT),
        methods=["GET"],
    )
    app = Starlette(routes=[Route("/page", page)])
    backend = MemoryBackend()
    install(app, registry, runtime=GuardRuntime(settings(), backend))
    await credit_store(backend).set("alice", 10)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        assert (await c.get("/page", headers=bearer())).json() == {"n": 0}
        await asyncio.sleep(1.2)
        stale = await c.get("/page", headers=bearer())
        assert "stale-while-revalidate" in stale.headers["cache-status"]
        await asyncio.sleep(0.3)  # the background refresh
        assert (await c.get("/page", headers=bearer())).json() == {"n": 1}


@pytest.mark.parametrize(
    "body", [b"[" * 30000 + b"]" * 30000, b'{"tags": ' + b"[" * 30000 + b"]" * 30000 + b"}"]
)
async def test_deeply_nested_purge_body_is_a_400(body: bytes) -> None:
    from asgi_guard.stages.cache import purge_endpoint

    endpoint = purge_endpoint(GuardRuntime(settings(), MemoryBackend()), "purge-token")
    transport = httpx.ASGITransport(app=endpoint, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        response = await c.post("/", content=body, headers={"authorization": "Bearer purge-token"})
    assert response.status_code == 400
