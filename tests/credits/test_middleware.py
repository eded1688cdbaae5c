"""The credits stage as a user sees it: statuses, the remaining-balance header, and balances."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from asgi_guard import GuardMiddleware, JobConfig, RouteRegistry
from asgi_guard.config import CircuitBreakerConfig
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import MemoryBackend

from ._helpers import client, guarded_app

PRICE = JobConfig(endpoint_name="priced", required_credits=3, credit_type="gpu")
USER = "127.0.0.1"  # anonymous requests are charged to the client IP
PAYER = Anonymous(USER)  # an anonymous client\'s balance is addressed by its address


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def test_success_commits_and_reports_remaining() -> None:
    backend = MemoryBackend()
    store = credit_store(backend)
    await store.set(PAYER, 10, "gpu")
    async with client(guarded_app(ok, PRICE, backend=backend)) as http:
        first = await http.get("/job")
        second = await http.get("/job")
    assert first.status_code == 200 and first.headers["x-credits-remaining"] == "7"
    assert second.headers["x-credits-remaining"] == "4"
    assert await store.balance(PAYER, "gpu") == 4
    assert await store.balance(PAYER) == 0, "only the route's credit type is charged"
    labels = {"route": "priced", "credit_type": "gpu", "action": "committed"}
    assert (REGISTRY.get_sample_value("asgi_guard_credits_total", labels) or 0) >= 2


async def test_short_balance_is_402_with_the_balance() -> None:
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 2, "gpu")
    called = []

    async def handler(request: Request) -> Response:
        called.append(1)
        return PlainTextResponse("no")

    async with client(guarded_app(handler, PRICE, backend=backend)) as http:
        response = await http.get("/job", headers={"x-request-id": "req-402"})
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-credits-remaining"] == "2"
    body = response.json()
    assert body["balance"] == 2 and body["required"] == 3 and body["credit_type"] == "gpu"
    assert body["request_id"] == "req-402" and body["status"] == 402
    assert not called
    assert await credit_store(backend).balance(PAYER, "gpu") == 2


async def test_raising_handler_refunds() -> None:
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 5, "gpu")

    async def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    async with client(guarded_app(boom, PRICE, backend=backend)) as http:
        response = await http.get("/job")
    assert response.status_code == 500
    assert await credit_store(backend).balance(PAYER, "gpu") == 5


async def test_error_statuses_refund_and_header_shows_refund() -> None:
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 5, "gpu")

    async def handler(request: Request) -> Response:
        return PlainTextResponse("x", status_code=int(request.query_params["status"]))

    async with client(guarded_app(handler, PRICE, backend=backend)) as http:
        for status in (400, 404, 422, 500, 503):
            response = await http.get("/job", params={"status": status})
            assert response.status_code == status
            assert response.headers["x-credits-remaining"] == "5"
        redirect = await http.get("/job", params={"status": 302}, follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["x-credits-remaining"] == "2"
    assert await credit_store(backend).balance(PAYER, "gpu") == 2


async def test_handler_timeout_is_504_and_refunds() -> None:
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 5, "gpu")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(30)
        return PlainTextResponse("late")

    config = PRICE.model_copy(update={"handler_timeout": 0.05})
    async with client(guarded_app(slow, config, backend=backend)) as http:
        response = await http.get("/job")
    assert response.status_code == 504
    assert response.json()["type"].endswith("handler-timeout")
    assert response.headers["x-credits-remaining"] == "5"
    assert await credit_store(backend).balance(PAYER, "gpu") == 5


async def test_open_circuit_refunds() -> None:
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 20, "gpu")

    async def failing(request: Request) -> Response:
        return PlainTextResponse("down", status_code=500)

    config = PRICE.model_copy(
        update={
            "endpoint_name": "priced-breaker",
            "circuit_breaker": CircuitBreakerConfig(enabled=True, circuit_breaker_threshold=2),
        }
    )
    async with client(guarded_app(failing, config, backend=backend)) as http:
        statuses = [(await http.get("/job")).status_code for _ in range(2)]
        opened = await http.get("/job")
    assert statuses == [500, 500]
    assert opened.status_code == 503 and opened.json()["type"].endswith("circuit-open")
    assert opened.headers["x-credits-remaining"] == "20"
    assert await credit_store(backend).balance(PAYER, "gpu") == 20


async def test_client_disconnect_refunds() -> None:
    """The client went away before the response was complete: the request is not charged, and the
    handler is cancelled (issue 13: nobody will read its answer), so nothing is sent."""
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 5, "gpu")
    registry = RouteRegistry()
    registry.register("/job", PRICE)

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the body
        message = await receive()  # the client is gone
        assert message["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"nobody reads this"})

    guard = GuardMiddleware(handler, registry=registry, backend=backend)
    messages = [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/job",
        "headers": [],
        "query_string": b"",
        "client": (USER, 1),
    }
    await guard(scope, receive, send)  # type: ignore[arg-type]
    assert sent == []
    assert await credit_store(backend).balance(PAYER, "gpu") == 5


async def test_duplicate_request_id_in_flight_is_409() -> None:
    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 10, "gpu")
    gate = asyncio.Event()

    async def waits(request: Request) -> Response:
        await gate.wait()
        return PlainTextResponse("ok")

    async with client(guarded_app(waits, PRICE, backend=backend)) as http:
        first = asyncio.create_task(http.get("/job", headers={"x-request-id": "same"}))
        for _ in range(100):
            if await credit_store(backend).balance(PAYER, "gpu") == 7:
                break
            await asyncio.sleep(0.01)
        second = await http.get("/job", headers={"x-request-id": "same"})
        gate.set()
        assert (await first).status_code == 200
    assert second.status_code == 409
    assert json.loads(second.content)["type"].endswith("duplicate-request-id")
    assert await credit_store(backend).balance(PAYER, "gpu") == 7
