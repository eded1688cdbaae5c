"""GuardSettings.health_path: readiness pings the backend, `?probe=live` never touches it."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.state.memory import MemoryBackend

HEALTH = "/_guard/health"


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app(settings: GuardSettings, backend: MemoryBackend | None = None) -> GuardMiddleware:
    registry = RouteRegistry()
    registry.register("/items", JobConfig(endpoint_name="items"))
    return GuardMiddleware(
        Starlette(routes=[Route("/items", ok)]), registry=registry, settings=settings, backend=backend
    )


class DownBackend(MemoryBackend):
    """A memory backend whose ping fails, counting pings (the liveness probe must not ping)."""

    pings = 0

    async def ping(self) -> bool:
        type(self).pings += 1
        return False


async def test_off_by_default(make_client) -> None:  # type: ignore[no-untyped-def]
    assert GuardSettings(_env_file=None).health_path == ""  # type: ignore[call-arg]
    client = make_client(app(GuardSettings(_env_file=None)))  # type: ignore[call-arg]
    assert (await client.get(HEALTH)).status_code == 404


async def test_memory_backend_is_ready_and_live(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(app(GuardSettings(_env_file=None, health_path=HEALTH)))  # type: ignore[call-arg]
    ready = await client.get(HEALTH)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "backend": "ok"}
    assert ready.headers["cache-control"] == "no-store"
    live = await client.get(HEALTH, params={"probe": "live"})
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    head = await client.head(HEALTH)
    assert (head.status_code, head.content) == (200, b"")


async def test_down_backend_is_503_problem_but_live(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(app(GuardSettings(_env_file=None, health_path=HEALTH), DownBackend()))  # type: ignore[call-arg]
    down = await client.get(HEALTH)
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["backend"] == "unavailable"
    assert down.json()["type"].endswith("backend-unavailable")
    before = DownBackend.pings
    live = await client.get(HEALTH, params={"probe": "live"})
    assert live.status_code == 200
    assert DownBackend.pings == before  # liveness never touched the backend


async def test_other_methods_are_405(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(app(GuardSettings(_env_file=None, health_path=HEALTH)))  # type: ignore[call-arg]
    response = await client.post(HEALTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["health", "_guard/health"])
def test_health_path_must_start_with_slash(path: str) -> None:
    with pytest.raises(ValueError):
        GuardSettings(_env_file=None, health_path=path)  # type: ignore[call-arg]


async def test_real_valkey_ready_then_fast_503_when_stopped(make_client, own_valkey) -> None:  # type: ignore[no-untyped-def]
    client = make_client(app(GuardSettings(_env_file=None, health_path=HEALTH, valkey_url=own_valkey.url)))  # type: ignore[call-arg]
    assert (await client.get(HEALTH)).json() == {"status": "ok", "backend": "ok"}
    own_valkey.nodes[0].stop()
    started = time.monotonic()
    down = await asyncio.wait_for(client.get(HEALTH), timeout=5)
    elapsed = time.monotonic() - started
    assert down.status_code == 503
    assert down.json()["backend"] == "unavailable"
    assert elapsed < 2.5
    assert (await client.get(HEALTH, params={"probe": "live"})).status_code == 200
    own_valkey.nodes[0].start()
    for _ in range(30):
        if (await client.get(HEALTH)).status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert (await client.get(HEALTH)).status_code == 200
