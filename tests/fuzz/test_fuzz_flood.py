"""Floods by one client must not evict another client's state on the embedded backend.

Issue 13 case 7: one LRU bound for everyone let an attacker's stream of distinct Idempotency-Keys
evict a victim's record, so the victim's retry ran the handler again and was charged again. The
backend's bound is made small here (`MemoryBackend(max_keys=50)`) so the flood is cheap; the rule is
the same at any size.
"""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.stages.idempotency.config import IdempotencyConfig
from asgi_guard.state import MemoryBackend

pytestmark = pytest.mark.fuzz

BOUND = 50


def _params(cls: type) -> set[str]:
    return set(inspect.signature(cls).parameters)


VICTIM, ATTACKER = "198.51.100.7", "203.0.113.9"


def test_idempotency_record_survives_another_clients_key_flood() -> None:
    calls: list[str] = []

    async def handler(request: Request) -> JSONResponse:
        calls.append(request.client.host if request.client else "?")
        return JSONResponse({"n": len(calls)})

    app = Starlette(routes=[Route("/pay/{resource_id}", handler, methods=["POST"])])
    registry = RouteRegistry()
    registry.register(
        "/pay/{resource_id}",
        JobConfig(endpoint_name="pay", required_credits=1, idempotency=IdempotencyConfig(enabled=True)),
        methods=["POST"],
    )
    # The store's bound is small so the flood is cheap; a per-client quota, where the backend has
    # one, is smaller still (a quota above the whole bound could not protect anyone).
    quota = {"max_keys_per_owner": BOUND // 5} if "max_keys_per_owner" in _params(MemoryBackend) else {}
    backend = MemoryBackend(max_keys=BOUND, **quota)
    guard = GuardMiddleware(app, registry=registry, settings=GuardSettings(metrics_path=""), backend=backend)

    async def post(ip: str, key: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=guard, client=(ip, 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post("/pay/1", json={"amount": 1}, headers={"idempotency-key": key})

    async def scenario() -> tuple[httpx.Response, httpx.Response, int]:
        first = await post(VICTIM, "victim-key")  # builds the stack and starts the runtime
        store = credit_store(backend)
        await store.grant(Anonymous(VICTIM), 10)  # anonymous clients: balances by address
        await store.grant(Anonymous(ATTACKER), 10 * BOUND)
        first = await post(VICTIM, "victim-key-2")
        for i in range(2 * BOUND):
            await post(ATTACKER, f"flood-{i}")
        retry = await post(VICTIM, "victim-key-2")
        return first, retry, await store.balance(Anonymous(VICTIM))

    first, retry, balance = asyncio.run(scenario())
    assert first.status_code == 200, first.text
    assert retry.status_code == 200, retry.text
    assert retry.headers.get("idempotent-replayed") == "true", (
        f"the victim's retry ran again after another client's flood of {2 * BOUND} keys "
        f"(handler calls by the victim: {calls.count(VICTIM)})"
    )
    assert balance == 9, f"the victim was charged {10 - balance} times for one idempotent request"
