"""Attacks on state keys: one client spending or resetting what belongs to another."""

from __future__ import annotations

import pytest
from binding.bindkit import JWT, bearer, client, settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.credits import credit_store
from asgi_guard.state.memory import MemoryBackend


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.xfail(
    strict=True,
    reason="anonymous credits are keyed by the bare client IP, in the same namespace as JWT subjects: "
    "an anonymous client at 10.1.2.3 spends the balance of the user whose `sub` is '10.1.2.3'",
)
async def test_anonymous_client_spends_the_credits_of_a_subject_named_like_its_ip() -> None:
    registry = RouteRegistry()
    registry.register("/free-tier", JobConfig(endpoint_name="anon", required_credits=1))
    registry.register("/paid", JobConfig(endpoint_name="paid", required_credits=1, **JWT))
    app = Starlette(routes=[Route("/free-tier", ok), Route("/paid", ok)])
    backend = MemoryBackend()
    runtime = GuardRuntime(settings(), backend)
    install(app, registry, runtime=runtime)
    store = credit_store(backend)
    await store.set("127.0.0.1", 5)  # the paying customer whose IdP subject happens to be this string
    async with client(app) as c:  # an anonymous client connecting from 127.0.0.1
        anonymous = await c.get("/free-tier")
        assert (await c.get("/paid", headers=bearer("127.0.0.1"))).status_code == 200
    assert anonymous.status_code == 402, "the anonymous client must not reach the subject's balance"
    assert await store.balance("127.0.0.1") == 4
