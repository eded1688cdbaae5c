"""Attack 2: stale-while-revalidate revalidations (the guard's own, uncharged requests)."""

from __future__ import annotations

import asyncio
import itertools

import httpx
from binding.bindkit import JWT, bearer, settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.credits import credit_store
from asgi_guard.state.memory import MemoryBackend


async def test_polling_a_per_principal_swr_entry_runs_the_handler_again_and_again_for_one_credit() -> None:
    """A per-principal entry on a credits route: the client pays for the first miss, then every
    stale hit (one per max-age) makes the guard run the handler again for it, never charged. The
    work is done for this one principal alone (its own key), yet it is free: 1 credit buys an
    unbounded stream of fresh handler runs. (Documented as "revalidation is free"; flagged.)"""
    runs = itertools.count(1)

    async def report(request: Request) -> JSONResponse:
        return JSONResponse(
            {"run": next(runs)}, headers={"cache-control": "max-age=1, stale-while-revalidate=60"}
        )

    registry = RouteRegistry()
    registry.register(
        "/report",
        JobConfig(endpoint_name="report", required_credits=5, cache={"enabled": True}, **JWT),
        methods=["GET"],
    )
    app = Starlette(routes=[Route("/report", report)])
    backend = MemoryBackend()
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), backend))
    await credit_store(backend).set("alice", 5)  # one request's worth
    seen = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 4000)), base_url="http://api"
    ) as c:
        for _ in range(4):
            r = await c.get("/report", headers=bearer("alice"))
            assert r.status_code == 200
            seen.append(r.json()["run"])
            await asyncio.sleep(1.1)
    handler_runs = next(runs) - 1
    balance = await credit_store(backend).balance("alice")
    assert balance == 0
    assert handler_runs <= 1, f"{handler_runs} handler runs for alice alone, paid 1 ({seen})"
