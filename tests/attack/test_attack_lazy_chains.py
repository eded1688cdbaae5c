"""Attack 2: lazily built chains (`stack._LazyChain`): first requests racing, the stages a lazy
route gets, and client input reaching a stage's encoder (held unless marked)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from binding.bindkit import JWT, bearer, settings
from guardkit import UNCROSSED_WINDOW, drive, http_scope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install, stack
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.state.memory import MemoryBackend


async def test_concurrent_first_requests_to_lazy_routes_get_the_full_policy() -> None:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    shared = JobConfig(
        rate_limit={
            "enabled": True,
            "algo": "fixed_window",
            "fixed_window": {"limit": 1, "window": UNCROSSED_WINDOW},
        },
        **JWT,
    )
    registry = RouteRegistry()
    for i in range(20):
        registry.register(f"/r{i}", shared, methods=["GET"])
    app = Starlette(routes=[Route(f"/r{i}", ok) for i in range(20)])
    guard = install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), MemoryBackend()))
    lazy = [r for r, (chain, _) in guard._pipelines.items() if isinstance(chain, stack._LazyChain)]
    assert len(lazy) >= 19  # one built at start-up, the others wait for their first request
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        for i in range(1, 20):
            anon = await asyncio.gather(*(c.get(f"/r{i}") for _ in range(5)))
            assert {r.status_code for r in anon} == {401}
            authed = await asyncio.gather(*(c.get(f"/r{i}", headers=bearer("bob")) for _ in range(10)))
            assert sorted(r.status_code for r in authed) == [200] + [429] * 9


async def _raw(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Any:
    sent, _ = await drive(app, http_scope(method, path, headers, client=("1.2.3.4", 5), server=None), body)
    return [m["status"] for m in sent if m["type"] == "http.response.start"]


async def test_idempotency_on_a_path_with_an_undecodable_byte_is_never_a_500() -> None:
    """The cache key encodes the path with surrogateescape (a server may hand `/x/\\udcff` for
    `/x/%FF`); the idempotency fingerprint uses `ctx.path.encode()` (strict): UnicodeEncodeError."""

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    registry = RouteRegistry()
    registry.register(
        "/x/{resource_id}", JobConfig(endpoint_name="x", idempotency={"enabled": True}), methods=["POST"]
    )
    app = Starlette(routes=[Route("/x/{resource_id}", ok, methods=["POST"])])
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), MemoryBackend()))
    statuses = await _raw(app, "POST", "/x/\udcff", [(b"idempotency-key", b"k1")], b"{}")
    assert statuses and statuses[0] < 500, statuses
