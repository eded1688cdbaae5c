"""Cache TTL per tier (issue 14): a fill's freshness lifetime is the caller's tier TTL, at most.

Per-principal keys use the caller's tier; a shared key uses the lowest TTL of all tiers and the
route's, so a pro caller's fill never serves a free caller past the free TTL. A response's own
max-age / s-maxage only shortens the lifetime; stored entries keep the lifetime they were filled with.
"""

from __future__ import annotations

import asyncio
import tomllib
from typing import Any

import pytest
from cache_helpers import make_backend
from guardkit import Clock
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import asgi_guard.stack
from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import CacheConfig
from asgi_guard.core.context import Principal
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.stage import Stage
from asgi_guard.stages import STAGES
from asgi_guard.state import Backend, MemoryBackend

TIER = {"by": "claim:plan", "default": "free"}


class PlanAuth(Stage):  # type: ignore[type-arg]
    """Stands in for the security stage: `X-User: name` is the principal, `X-Plan` its plan claim."""

    name = "fake_auth"

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        user = headers.get(b"x-user")
        if user is not None:
            claims = {"plan": headers[b"x-plan"].decode()} if b"x-plan" in headers else {}
            scope["asgi_guard"].principal = Principal(user.decode(), claims=claims)
        await self.app(scope, receive, send)


@pytest.fixture(autouse=True)
def plan_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_guard.stack, "STAGES", (PlanAuth, *STAGES))


class Handler:
    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.calls = 0
        self.headers = headers or {}

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        return JSONResponse({"call": self.calls}, headers=self.headers)


def app_for(backend: Backend, handler: Handler, key_prefix: str = "ag", **cache: Any) -> GuardMiddleware:
    cache.setdefault("tiers", {"free": 30, "pro": 300})
    config = JobConfig(
        endpoint_name="tiered", tier=cache.pop("tier", TIER), cache=CacheConfig(enabled=True, **cache)
    )
    registry = RouteRegistry()
    registry.register("/a", config)
    settings = GuardSettings(key_prefix=key_prefix, _env_file=None)  # type: ignore[call-arg]
    return GuardMiddleware(
        Starlette(routes=[Route("/a", handler.endpoint)]),
        registry=registry,
        settings=settings,
        backend=backend,
    )


def who(user: str, plan: str | None = None) -> dict[str, str]:
    return {"x-user": user} | ({"x-plan": plan} if plan is not None else {})


def ttl_left(response: Any) -> int:
    assert response.headers["x-cache"] == "HIT", response.headers
    return int(response.headers["cache-status"].rsplit("ttl=", 1)[1].split(";")[0])


async def test_two_tiers_get_their_own_lifetime_on_memory(make_client: Any) -> None:
    clock = Clock()
    handler = Handler()
    client = make_client(app_for(MemoryBackend(clock=clock), handler))
    for user, plan in (("ann", "pro"), ("bob", "free")):
        assert (await client.get("/a", headers=who(user, plan))).headers["x-cache"] == "MISS"
    clock.now += 20
    assert ttl_left(await client.get("/a", headers=who("ann", "pro"))) == 280
    assert ttl_left(await client.get("/a", headers=who("bob", "free"))) == 10
    clock.now += 11  # 31 s: past free's 30, well within pro's 300
    assert (await client.get("/a", headers=who("bob", "free"))).headers["x-cache"] == "MISS"
    hit = await client.get("/a", headers=who("ann", "pro"))
    assert hit.headers["age"] == "31" and ttl_left(hit) == 269
    assert handler.calls == 3
    clock.now += 270  # 301 s: pro's entry is stale too
    assert (await client.get("/a", headers=who("ann", "pro"))).headers["x-cache"] == "MISS"


async def test_default_tier_and_unlisted_tiers(make_client: Any) -> None:
    clock = Clock()
    client = make_client(app_for(MemoryBackend(clock=clock), Handler()))
    for user, plan in (("cat", None), ("dan", "gold"), ("eve", "bad plan!")):
        await client.get("/a", headers=who(user, plan))
        assert ttl_left(await client.get("/a", headers=who(user, plan))) == 30  # the default: free
    await client.get("/a")  # anonymous: the key is shared, so the lowest TTL (here free's 30)
    assert ttl_left(await client.get("/a")) == 30
    # a default tier cache.tiers does not list: the route TTL (default.cache_ttl = 60)
    client = make_client(
        app_for(MemoryBackend(clock=clock), Handler(), tier={"by": "claim:plan", "default": "basic"})
    )
    await client.get("/a", headers=who("fay", "basic"))
    assert ttl_left(await client.get("/a", headers=who("fay", "basic"))) == 60
    await client.get("/a", headers=who("gus", "pro"))
    assert ttl_left(await client.get("/a", headers=who("gus", "pro"))) == 300


async def test_a_response_max_age_and_default_ttl_still_bound_it(make_client: Any) -> None:
    clock = Clock()
    client = make_client(app_for(MemoryBackend(clock=clock), Handler({"cache-control": "max-age=10"})))
    await client.get("/a", headers=who("ann", "pro"))
    assert ttl_left(await client.get("/a", headers=who("ann", "pro"))) == 10
    client = make_client(app_for(MemoryBackend(clock=clock), Handler(), lru={"default_ttl": 100}))
    await client.get("/a", headers=who("ann", "pro"))
    assert ttl_left(await client.get("/a", headers=who("ann", "pro"))) == 100  # pro's 300 capped


async def test_shared_route_uses_the_lowest_ttl(make_client: Any) -> None:
    clock = Clock()
    handler = Handler()
    client = make_client(
        app_for(MemoryBackend(clock=clock), handler, shared=True, tiers={"free": 90, "pro": 300})
    )
    await client.get("/a", headers=who("ann", "pro"))  # a pro caller fills the shared entry
    free = await client.get("/a", headers=who("bob", "free"))
    assert ttl_left(free) == 60  # min(route 60, free 90, pro 300)
    clock.now += 61
    assert (await client.get("/a", headers=who("bob", "free"))).headers["x-cache"] == "MISS"
    assert handler.calls == 2


@pytest.mark.parametrize("kind", ["valkey", "cluster"])
async def test_two_tiers_on_real_valkey(
    request: pytest.FixtureRequest, kind: str, make_client: Any, key_prefix: str
) -> None:
    backend = await make_backend(request, kind, Clock(), key_prefix)
    try:
        handler = Handler()
        app = app_for(backend, handler, key_prefix, tiers={"free": 1, "pro": 3})
        client = make_client(app)
        for user, plan in (("ann", "pro"), ("bob", "free")):
            assert (await client.get("/a", headers=who(user, plan))).headers["x-cache"] == "MISS"
        assert ttl_left(await client.get("/a", headers=who("ann", "pro"))) >= 1
        await asyncio.sleep(1.3)  # free's 1 s is over, pro's 3 s is not
        assert (await client.get("/a", headers=who("bob", "free"))).headers["x-cache"] == "MISS"
        assert (await client.get("/a", headers=who("ann", "pro"))).headers["x-cache"] == "HIT"
        assert handler.calls == 3
    finally:
        await backend.close()


def test_toml_and_validation() -> None:
    data = tomllib.loads(
        """
        [routes.search]
        path = "/search"
        tier = { by = "claim:plan", default = "free" }
        [routes.search.cache]
        enabled = true
        tiers = { free = 30, pro = 300 }
        """
    )
    registry = RouteRegistry.from_mapping(data)
    config = next(iter(registry)).config
    assert config.cache.tiers == {"free": 30, "pro": 300} and config.cache.shared_ttl == 30
    assert CacheConfig().shared_ttl == CacheConfig().ttl == 60  # no tiers: the route TTL
    with pytest.raises(ValidationError, match="tier selector"):
        JobConfig(endpoint_name="x", cache=CacheConfig(enabled=True, tiers={"pro": 300}))
    for bad in ({"bad name": 30}, {"pro": 0}, {"pro": -5}):
        with pytest.raises(ValidationError):
            CacheConfig(tiers=bad)
    with pytest.raises(ConfigError):
        RouteRegistry.from_mapping(
            {"routes": {"r": {"path": "/r", "cache": {"enabled": True, "tiers": {"pro": "long"}}}}}
        )
