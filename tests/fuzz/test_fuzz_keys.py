"""Key forgery through the stack: no client-chosen value may equal another identity's key part.

Issue 13 case 6: with `key_by=["route", "header:X-API-Key"]`, a client without the header is
counted as `~<its ip>`; a client that *sends* `X-API-Key: ~<victim ip>` must get its own bucket,
not the victim's. Checked end to end (requests through the stack, memory backend) for any address,
so it holds whatever the key-building code looks like.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import FixedWindowConfig, RateLimitAlgo, RateLimitConfig

pytestmark = pytest.mark.fuzz

_ON_DEMAND = os.environ.get("ASGI_GUARD_FUZZ_EXAMPLES")
LIMIT = 2


def build() -> GuardMiddleware:
    async def handler(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/k/{resource_id}", handler)])
    registry = RouteRegistry()
    registry.register(
        "/k/{resource_id}",
        JobConfig(
            endpoint_name="keyed",
            rate_limit=RateLimitConfig(
                enabled=True,
                algo=RateLimitAlgo.fixed_window,
                fixed_window=FixedWindowConfig(limit=LIMIT, window=3600),
                key_by=["route", "header:X-API-Key"],
            ),
        ),
        methods=["GET"],
    )
    return GuardMiddleware(app, registry=registry, settings=GuardSettings(metrics_path=""))


async def _get(app: GuardMiddleware, ip: str, api_key: str | None) -> int:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {"x-api-key": api_key} if api_key is not None else {}
        return (await client.get("/k/1", headers=headers)).status_code


forgeries = st.sampled_from(["~{ip}", "~{ip} ", " ~{ip}", "%7E{ip}", "~{ip}:", "{ip}"])


@settings(
    max_examples=int(_ON_DEMAND or 60),
    deadline=None,
    derandomize=_ON_DEMAND is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(victim=st.ip_addresses().map(str), forged=forgeries)
@example(victim="198.51.100.7", forged="~{ip}")  # the case as reported
@example(victim="::1", forged="~{ip}")
def test_api_key_header_cannot_spend_an_ip_identitys_quota(victim: str, forged: str) -> None:
    async def scenario() -> list[int]:
        app = build()
        attacker = "203.0.113.250" if victim != "203.0.113.250" else "203.0.113.251"
        for _ in range(LIMIT + 1):
            await _get(app, attacker, forged.format(ip=victim))
        return [await _get(app, victim, None) for _ in range(LIMIT)]

    statuses = asyncio.run(scenario())
    assert statuses == [200] * LIMIT, (
        f"X-API-Key {forged.format(ip=victim)!r} from another client spent the quota of {victim} "
        f"(who sends no key): {statuses}"
    )


@settings(
    max_examples=int(_ON_DEMAND or 60),
    deadline=None,
    derandomize=_ON_DEMAND is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    tail=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"),
        min_size=6,
        max_size=40,
    )
)
@example(tail="<script>alert(1)</script>")
def test_deny_mode_does_not_reflect_the_path(tail: str) -> None:
    """Issue 13 case 9: a denied unregistered route's problem body does not echo the client's path.
    (The app has the route, unregistered, so deny mode answers; a path no app route matches is the
    app's own 404, which the guard does not write.)"""

    async def nope(request: Request) -> JSONResponse:
        raise AssertionError("deny mode let an unregistered route run")

    app = Starlette(routes=[Route("/nope/{rest:path}", nope)])
    guard = GuardMiddleware(
        app, registry=RouteRegistry(), settings=GuardSettings(metrics_path="", unregistered="deny")
    )

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=guard)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/nope/" + tail)

    response = asyncio.run(get())
    assert response.status_code in (403, 404)
    assert response.headers["content-type"].startswith("application/problem+json")
    body = {k: v for k, v in response.json().items() if k != "request_id"}  # a random id may hold it
    assert not tail or all(tail not in str(v) for v in body.values()), f"the body reflects the path: {body}"
