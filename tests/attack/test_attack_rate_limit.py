"""Attacks on rate limiting: getting a fresh budget without being a new client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from binding.bindkit import JWT, bearer, settings
from guardkit import UNCROSSED_WINDOW
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install

LIMIT = {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 2, "window": UNCROSSED_WINDOW}}


async def login(request: Request) -> PlainTextResponse:
    return PlainTextResponse("try")


def app(**rate_limit: Any) -> Starlette:
    registry = RouteRegistry()
    registry.register("/login", JobConfig(endpoint_name="login", rate_limit={**LIMIT, **rate_limit}))
    registry.register("/me", JobConfig(endpoint_name="me", rate_limit=LIMIT, **JWT))
    application = Starlette(routes=[Route("/login", login), Route("/me", login)])
    install(application, registry, settings())
    return application


async def get(application: Any, peer: str, path: str = "/login", **kw: Any) -> int:
    transport = httpx.ASGITransport(app=application, client=(peer, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        return (await c.get(path, **kw)).status_code


@pytest.mark.parametrize("key_by", [None, ["route", "ip"], ["route", "header:x-api-key"]])
async def test_rotating_ipv6_addresses_within_one_64_gets_no_fresh_budget(key_by: list[str] | None) -> None:
    """Every IPv6 client holds at least a /64 (RFC 6177): one address per request must not reset it."""
    application = app(**({"key_by": key_by} if key_by else {}))
    statuses = [await get(application, f"2001:db8:0:7::{n:x}") for n in range(1, 6)]
    assert statuses == [200, 200, 429, 429, 429]
    assert await get(application, "2001:db8:0:8::1") == 200  # another /64 is another client
    assert await get(application, "192.0.2.1") == 200


async def test_ipv6_prefix_is_per_route_and_128_means_exact() -> None:
    application = app(ipv6_prefix=128)
    assert [await get(application, f"2001:db8::{n}") for n in range(1, 4)] == [200, 200, 200]


async def test_authenticated_callers_are_still_keyed_by_subject() -> None:
    application = app()
    for n in range(1, 3):
        assert await get(application, f"2001:db8:0:7::{n}", "/me", headers=bearer("alice")) == 200
    assert await get(application, "2001:db8:0:7::3", "/me", headers=bearer("bob")) == 200
    assert await get(application, "2001:db8:0:7::4", "/me", headers=bearer("alice")) == 429
