"""Attacks on the response cache (cross-client leaks held; see the report). What broke is recorded here:
- a stale-while-revalidate refresh on a route with credits was refused (the settled request id) and
  never revalidated; it now runs as its own, uncharged revalidation;
- on the embedded backend, one client's flood of distinct URLs evicted every other client's entries
  (one eviction order for everyone); entries now belong to the client that filled them.
"""

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
    # two charges: the miss and the revalidation of alice's own entry (tests/attack/
    # test_attack_revalidation.py); the stale hit and the fresh hit are free
    assert await credit_store(backend).balance("alice") == 8


@pytest.mark.parametrize("algo", ["lru", "lfu", "fifo", "lifo", "mru"])
async def test_another_clients_url_flood_never_evicts_my_entry(algo: str) -> None:
    """Client A fills one entry; client B (another IP) requests thousands of distinct URLs of the
    same cached route (capacity 64). A's next request is still a hit: B's flood evicted B's own."""
    calls: list[str] = []

    async def page(request: Request) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse({"path": request.url.path})

    registry = RouteRegistry()
    registry.register(
        "/items/{resource_id}",
        JobConfig(endpoint_name="items", cache={"enabled": True, "algo": algo, algo: {"capacity": 64}}),
        methods=["GET"],
    )
    app = Starlette(routes=[Route("/items/{resource_id}", page)])
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), MemoryBackend()))

    def client_at(ip: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 4000)), base_url="http://api"
        )

    async with client_at("198.51.100.7") as alice, client_at("203.0.113.9") as mallory:
        assert (await alice.get("/items/mine")).headers["x-cache"] == "MISS"
        assert (await alice.get("/items/mine")).headers["x-cache"] == "HIT"
        for i in range(2000):
            assert (await mallory.get(f"/items/flood-{i}")).status_code == 200
        again = await alice.get("/items/mine")
    assert again.headers["x-cache"] == "HIT", f"{algo}: another client's flood evicted the entry"
    assert calls.count("/items/mine") == 1


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
