"""A body over the route's limit is a 413 problem, also when the app is the first to read it.

Found by tests/core/test_no_reference_cycles.py: on a route whose stages need the body only later
(idempotency with a key), FastAPI read the body first, the guard's 413 was raised inside FastAPI's
body parsing, and FastAPI answered its own 400 "There was an error parsing the body".
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from guardkit import http_scope

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.state.memory import MemoryBackend


def app_with_limit(limit: int) -> FastAPI:
    app = FastAPI()

    @app.post("/orders")
    async def order(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    registry = RouteRegistry()
    registry.register(
        "/orders", JobConfig(idempotency={"enabled": True}, max_body_size=limit), methods=["POST"]
    )
    install(app, registry, runtime=GuardRuntime(GuardSettings(_env_file=None), MemoryBackend()))  # type: ignore[call-arg]
    return app


async def test_a_declared_length_over_the_limit_is_a_413_before_the_app_reads() -> None:
    transport = httpx.ASGITransport(app=app_with_limit(64))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        too_big = await client.post(
            "/orders", content=b'{"n": "' + b"x" * 100 + b'"}', headers={"idempotency-key": "k1"}
        )
        fits = await client.post("/orders", json={"n": 1}, headers={"idempotency-key": "k2"})
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == "application/problem+json"
    assert too_big.json()["type"].endswith("payload-too-large")
    assert fits.status_code == 200 and fits.json() == {"n": 1}


async def test_a_garbage_content_length_is_not_a_500() -> None:
    app = app_with_limit(64)
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    headers = [(b"content-length", b"-1"), (b"content-type", b"application/json")]
    scope = http_scope("POST", "/orders", headers, client=("127.0.0.1", 5000), server=("127.0.0.1", 8000))
    await app(scope, receive, send)
    assert messages[0]["status"] < 500
