"""A price read from the request is the reservation; the handler's reported usage is what is kept.

Memory and real Valkey (standalone and cluster): less than reserved is charged as reported (the rest
refunded at once), more than reserved is charged the reservation and never more, nothing reported
keeps the reservation, and a failed response refunds everything whatever was reported.
"""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.core.context import get_guard
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend

from ._helpers import client, guarded_app

USER = "127.0.0.1"  # anonymous requests are charged to the client IP
PAYER = Anonymous(USER)  # an anonymous client\'s balance is addressed by its address


async def completion(request: Request) -> JSONResponse:
    body = await request.json()
    guard = request.state.guard
    if "used" in body:
        guard.report_usage(body["used"])
    return JSONResponse({"ok": True}, status_code=body.get("status", 200))


def app_on(backend: Backend):  # type: ignore[no-untyped-def]
    config = JobConfig(credits_price={"source": "body", "name": "max_tokens", "max": 10_000})
    return guarded_app(completion, config, backend=backend, settings=GuardSettings(_env_file=None))  # type: ignore[call-arg]


@pytest.fixture(params=["memory", "standalone", "cluster"])
async def backend(request: pytest.FixtureRequest, key_prefix: str):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        yield MemoryBackend()
        return
    url = request.getfixturevalue("valkey_url" if request.param == "standalone" else "valkey_cluster_url")
    valkey = ValkeyBackend(url, key_prefix=key_prefix)
    yield valkey
    await valkey.close()


@pytest.mark.valkey
async def test_usage_charges_less_than_reserved_and_never_more(backend: Backend) -> None:
    store = credit_store(backend)
    await store.set(PAYER, 1000)
    async with client(app_on(backend)) as http:
        low = await http.post("/job", json={"max_tokens": 100, "used": 30})
        assert low.status_code == 200
        assert low.headers["x-credits-remaining"] == "900"  # the reservation, while it was pending
        assert await store.balance(PAYER) == 970  # 30 kept, 70 back

        over = await http.post("/job", json={"max_tokens": 100, "used": 5000})
        assert over.status_code == 200
        assert await store.balance(PAYER) == 870  # capped at the 100 reserved

        silent = await http.post("/job", json={"max_tokens": 50})
        assert silent.status_code == 200
        assert await store.balance(PAYER) == 820  # nothing reported: the reservation is kept

        zero = await http.post("/job", json={"max_tokens": 50, "used": 0})
        assert zero.status_code == 200
        assert await store.balance(PAYER) == 820

        failed = await http.post("/job", json={"max_tokens": 100, "used": 10, "status": 500})
        assert failed.status_code == 500
        assert await store.balance(PAYER) == 820  # a failure refunds all

        short = await http.post("/job", json={"max_tokens": 821})
        assert short.status_code == 402
        assert short.json()["required"] == 821
        assert await store.balance(PAYER) == 820


async def test_price_garbage_is_a_400_and_reserves_nothing() -> None:
    backend = MemoryBackend()
    store = credit_store(backend)
    await store.set(PAYER, 10)
    async with client(app_on(backend)) as http:
        for body in ({"max_tokens": -5}, {"max_tokens": "lots"}, {"max_tokens": 10_001}, {}):
            response = await http.post("/job", json=body)
            assert response.status_code == 400, (body, response.text)
    assert await store.balance(PAYER) == 10


async def test_report_usage_accepts_only_whole_numbers() -> None:
    seen: list[str] = []

    async def handler(request: Request) -> JSONResponse:
        guard = get_guard(request)
        assert guard is not None
        for bad in (-1, 1.5, "3", True, None):
            try:
                guard.report_usage(bad)  # type: ignore[arg-type]
            except ValueError:
                seen.append(repr(bad))
        guard.report_usage(2)
        return JSONResponse({})

    backend = MemoryBackend()
    await credit_store(backend).set(PAYER, 10)
    app = guarded_app(handler, JobConfig(required_credits=5), backend=backend)
    async with client(app) as http:
        assert (await http.post("/job")).status_code == 200
    assert len(seen) == 5
    assert await credit_store(backend).balance(PAYER) == 8
