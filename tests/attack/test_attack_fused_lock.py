"""Attack 2: the fused rate-limit + cache lookup (one EVALSHA) takes the cache's fill lock on a miss;
only the rate limiter's own rejection gives it back (`Riders.abandon`). A stage between the two
(idempotency: 400/409/422 or a replay; credits with `charge_cache_hits`: 402) answers the request
without the cache stage ever running, so the lock stays until its PX expiry and every other client's
request for that URL waits `single_flight_timeout` (polling "another caller is filling") first.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from binding.bindkit import settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime


def _client(app: Any, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 4000)), base_url="http://api")


@pytest.fixture
async def valkey(valkey_url: str, key_prefix: str) -> Any:
    from asgi_guard.state import ValkeyBackend

    backend = ValkeyBackend(valkey_url, key_prefix=key_prefix)
    yield backend
    await backend.close()


ATTACKS = {
    # an Idempotency-Key over max_key_length: the idempotency stage's 400, after the fused lookup
    "idempotency-400": (
        {"idempotency": {"enabled": True, "max_key_length": 8}},
        {"idempotency-key": "x" * 64},
    ),
    # an anonymous client without credits on a route that charges hits: the credits stage's 402
    "credits-402": ({"required_credits": 1, "charge_cache_hits": True}, {}),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_a_request_refused_between_the_limiter_and_the_cache_leaves_the_fill_lock(
    attack: str, valkey: Any
) -> None:
    section, headers = ATTACKS[attack]

    async def page(request: Request) -> JSONResponse:
        return JSONResponse({"page": 1}, headers={"cache-control": "max-age=60"})

    registry = RouteRegistry()
    registry.register(
        "/page",
        JobConfig(
            endpoint_name="page",
            rate_limit={
                "enabled": True,
                "algo": "fixed_window",
                "fixed_window": {"limit": 1000, "window": 60},
            },
            cache={"enabled": True, "single_flight_timeout": 3.0},
            **section,
        ),
        methods=["GET"],
    )
    app = Starlette(routes=[Route("/page", page)])
    runtime = GuardRuntime(settings(metrics_path=""), valkey)
    install(app, registry, runtime=runtime)
    if attack == "credits-402":
        from asgi_guard.stages.credits import Anonymous, credit_store

        await credit_store(valkey).set(Anonymous("198.51.100.7"), 10)  # the victim has credits
    async with _client(app, "203.0.113.9") as mallory, _client(app, "198.51.100.7") as victim:
        refused = await mallory.get("/page", headers=headers)
        assert 400 <= refused.status_code < 500, refused.text
        started = time.monotonic()
        served = await victim.get("/page")
        took = time.monotonic() - started
    assert served.status_code == 200
    assert took < 1.0, (
        f"{attack}: the victim waited {took:.1f} s for a fill lock a refused request left behind"
    )
