"""`JobConfig.charge_cache_hits`: a response the cache answers on a priced route is charged (402
when short), because the credits stage then runs before the cache; by default a hit is free."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from asgi_guard import JobConfig
from asgi_guard.config import CacheConfig, PoolingConfig
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend

from ._helpers import client, guarded_app

USER = "127.0.0.1"  # anonymous requests are charged to the client IP
PAYER = Anonymous(USER)  # an anonymous client\'s balance is addressed by its address


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        return JSONResponse({"call": self.calls}, headers={"cache-control": "max-age=60"})


def priced(charge_hits: bool, name: str) -> JobConfig:
    return JobConfig(
        endpoint_name=name,
        required_credits=3,
        charge_cache_hits=charge_hits,
        cache=CacheConfig(enabled=True),
    )


@pytest.fixture(params=["memory", "valkey"])
async def backend(request: pytest.FixtureRequest, key_prefix: str) -> Any:
    if request.param == "memory":
        yield MemoryBackend()
        return
    valkey = ValkeyBackend(request.getfixturevalue("valkey_url"), PoolingConfig(socket_timeout=3.0), key_prefix)
    yield valkey
    await valkey.close()


async def test_hits_are_free_by_default(backend: Backend) -> None:
    handler = Counting()
    await credit_store(backend).set(PAYER, 10)
    async with client(guarded_app(handler.endpoint, priced(False, "free_hits"), backend=backend)) as http:
        answers = [await http.get("/job") for _ in range(3)]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT", "HIT"]
    assert handler.calls == 1 and await credit_store(backend).balance(PAYER) == 7
    assert "x-credits-remaining" not in answers[1].headers


async def test_a_charged_hit_is_reserved_and_committed(backend: Backend) -> None:
    handler = Counting()
    await credit_store(backend).set(PAYER, 10)
    async with client(guarded_app(handler.endpoint, priced(True, "paid_hits"), backend=backend)) as http:
        answers = [await http.get("/job") for _ in range(3)]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT", "HIT"]
    assert [a.json() for a in answers] == [{"call": 1}] * 3
    assert [a.headers["x-credits-remaining"] for a in answers] == ["7", "4", "1"]
    assert handler.calls == 1 and await credit_store(backend).balance(PAYER) == 1


async def test_a_hit_the_balance_cannot_pay_is_402(backend: Backend) -> None:
    handler = Counting()
    await credit_store(backend).set(PAYER, 5)
    async with client(guarded_app(handler.endpoint, priced(True, "short_hits"), backend=backend)) as http:
        first = await http.get("/job")
        second = await http.get("/job")
    assert first.status_code == 200 and first.headers["x-credits-remaining"] == "2"
    assert second.status_code == 402 and second.json()["balance"] == 2
    assert handler.calls == 1 and await credit_store(backend).balance(PAYER) == 2
