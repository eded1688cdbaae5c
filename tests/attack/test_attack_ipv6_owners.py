"""Attack 2: per-client bounds keyed by the full IPv6 address (not the /64 the rate limiter uses).

One IPv6 subscriber holds a whole /64 (RFC 6177; the rate limiter counts it as one client). The
cache's per-owner bound and fairness rule, and the idempotency store's per-owner bound, key the
anonymous owner by `ctx.principal_key` = `~<full address>`: rotating addresses inside one /64 makes
every request a fresh, one-entry owner, so the victim (who holds a few entries) becomes "the owner
holding the most" and loses its entries to the flood.
"""

from __future__ import annotations

from typing import Any

import httpx
from binding.bindkit import settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.state.memory import MemoryBackend


def _client(app: Starlette, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 4000)), base_url="http://api")


def _cached_app(page: Any, capacity: int) -> Starlette:
    """`/items/{resource_id}` cached in an LRU of `capacity`, at most 8 entries per owner."""
    registry = RouteRegistry()
    registry.register(
        "/items/{resource_id}",
        JobConfig(
            endpoint_name="items",
            cache={"enabled": True, "algo": "lru", "lru": {"capacity": capacity}, "max_entries_per_owner": 8},
        ),
        methods=["GET"],
    )
    app = Starlette(routes=[Route("/items/{resource_id}", page)])
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), MemoryBackend()))
    return app


async def test_ipv6_rotation_inside_one_64_evicts_another_clients_cache_entries() -> None:
    calls: list[str] = []

    async def page(request: Request) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse({"path": request.url.path})

    app = _cached_app(page, capacity=64)
    async with _client(app, "198.51.100.7") as alice:
        for i in range(3):
            assert (await alice.get(f"/items/mine-{i}")).headers["x-cache"] == "MISS"
        # one subscriber, one /64, a fresh address per request (what the rate limiter counts as one)
        for i in range(200):
            async with _client(app, f"2001:db8:1:2::{i + 1:x}") as mallory:
                assert (await mallory.get(f"/items/flood-{i}")).status_code == 200
        hits = [(await alice.get(f"/items/mine-{i}")).headers["x-cache"] for i in range(3)]
    assert hits == ["HIT"] * 3, f"one /64's flood evicted another client's entries: {hits}"


async def test_ipv6_rotation_inside_one_64_is_one_owner_for_the_per_owner_bound() -> None:
    """`max_entries_per_owner=8`: one /64 should hold at most 8 entries of the namespace."""

    async def page(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path})

    app = _cached_app(page, capacity=1000)
    for i in range(100):
        async with _client(app, f"2001:db8:1:2::{i + 1:x}") as mallory:
            assert (await mallory.get(f"/items/flood-{i}")).status_code == 200
    # count hits of the flood: every entry is still there (100 > 8), so the bound did not hold
    survivors = 0
    async with _client(app, "2001:db8:1:2::ffff") as mallory:
        for i in range(100):
            if (await mallory.get(f"/items/flood-{i}")).headers["x-cache"] == "HIT":
                survivors += 1
    assert survivors <= 8, f"one /64 holds {survivors} entries past max_entries_per_owner=8"


async def test_ipv6_rotation_inside_one_64_flushes_another_clients_idempotency_record() -> None:
    """The idempotency store bounds each owner (`max_keys_per_owner`), so one client's flood evicts
    its own records; a /64 rotating addresses is a new owner per request, and its flood pushes the
    victim's record out of the shared bound: the victim's retry runs the handler a second time."""
    runs: list[str] = []

    async def pay(request: Request) -> JSONResponse:
        runs.append(request.headers["idempotency-key"])
        return JSONResponse({"paid": True})

    registry = RouteRegistry()
    registry.register("/pay", JobConfig(endpoint_name="pay", idempotency={"enabled": True}), methods=["POST"])
    app = Starlette(routes=[Route("/pay", pay, methods=["POST"])])
    backend = MemoryBackend(max_keys=200, max_keys_per_owner=10)
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), backend))
    async with _client(app, "198.51.100.7") as alice:
        assert (
            await alice.post("/pay", json={"n": 1}, headers={"idempotency-key": "alice-1"})
        ).status_code == 200
        for i in range(300):
            async with _client(app, f"2001:db8:1:2::{i + 1:x}") as mallory:
                await mallory.post("/pay", json={"n": i}, headers={"idempotency-key": f"m-{i}"})
        again = await alice.post("/pay", json={"n": 1}, headers={"idempotency-key": "alice-1"})
    assert again.status_code == 200
    assert runs.count("alice-1") == 1, "one /64's key flood evicted the victim's record: the retry ran twice"
