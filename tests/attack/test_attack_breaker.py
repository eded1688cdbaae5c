"""Attacks on the shared circuit breaker: one client opening a route's circuit for everyone with
failures that are its own doing (leaving mid-body, trickling the body), not the handler's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from guardkit import http_scope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.state.memory import MemoryBackend

BREAKER = {"enabled": True, "circuit_breaker_threshold": 3, "circuit_breaker_timeout": 30}


async def reads_body(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def app(settings: GuardSettings | None = None, **extra: Any) -> Starlette:
    registry = RouteRegistry()
    registry.register(
        "/job", JobConfig(endpoint_name="job", circuit_breaker=BREAKER, **extra), methods=["POST"]
    )
    application = Starlette(routes=[Route("/job", reads_body, methods=["POST"])])
    if settings is None:
        install(application, registry, GuardSettings(_env_file=None), backend=MemoryBackend())  # type: ignore[call-arg]
    else:
        install(application, registry, settings)
    return application


async def post(application: Any, messages: list[dict[str, Any]], delay: float = 0.0) -> int | None:
    """One POST fed `messages` (each after `delay` s), then nothing: a client that stays silent."""
    scope = http_scope("POST", "/job", [(b"content-length", b"100")], client=("10.0.0.66", 4000))
    pending = list(messages)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    try:
        await application(scope, receive, send)
    except Exception:  # the server would log it; the status is what the client saw
        pass
    return statuses[0] if statuses else None


INNOCENT = [{"type": "http.request", "body": b"{}", "more_body": False}]


async def test_clients_leaving_mid_body_do_not_open_the_circuit_for_everyone() -> None:
    application = app()
    leaving = [{"type": "http.request", "body": b"x" * 10, "more_body": True}, {"type": "http.disconnect"}]
    for _ in range(4):
        await post(application, leaving)
    assert await post(application, INNOCENT) == 200


async def test_a_trickled_body_is_a_408_and_does_not_open_the_circuit() -> None:
    application = app(handler_timeout=0.2)
    trickle = [{"type": "http.request", "body": b"x", "more_body": True}] * 50
    statuses = [await post(application, trickle, delay=0.1) for _ in range(4)]
    assert statuses == [408] * 4  # RFC 9110 §15.5.9: the client was too slow, not the handler
    assert await post(application, INNOCENT) == 200


async def test_a_stalled_handler_is_still_a_504_and_counts() -> None:
    async def stalls(request: Request) -> JSONResponse:
        await request.body()
        await asyncio.sleep(5)
        return JSONResponse({})

    registry = RouteRegistry()
    registry.register(
        "/job",
        JobConfig(endpoint_name="job", circuit_breaker=BREAKER, handler_timeout=0.05),
        methods=["POST"],
    )
    application = Starlette(routes=[Route("/job", stalls, methods=["POST"])])
    install(application, registry, GuardSettings(_env_file=None), backend=MemoryBackend())  # type: ignore[call-arg]
    statuses = [await post(application, INNOCENT) for _ in range(4)]
    assert statuses == [504, 504, 504, 503]


@pytest.mark.valkey
async def test_hanging_up_on_one_worker_does_not_open_the_shared_circuit(
    valkey_url: str, key_prefix: str
) -> None:
    """Two workers sharing one Valkey: the attacker leaves mid-body on one, a client of the other is served."""
    shared = GuardSettings(_env_file=None, valkey_url=valkey_url, key_prefix=key_prefix)  # type: ignore[call-arg]
    attacked, other = app(shared), app(shared)
    leaving = [{"type": "http.request", "body": b"x" * 10, "more_body": True}, {"type": "http.disconnect"}]
    for _ in range(4):
        await post(attacked, leaving)
    assert await post(other, INNOCENT) == 200
