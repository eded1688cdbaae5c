"""The rate limit's hot path (one limit on the embedded store): cached state keys equal the general
path's, never cross routes or limits, stay bounded; the store's cells keep the store's meaning."""

from __future__ import annotations

from typing import Any

from guardkit import UNCROSSED_WINDOW
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.core.context import SCOPE_KEY, GuardContext, Principal
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.core.stage import build_chain
from asgi_guard.stages.rate_limit import stage as rl_stage
from asgi_guard.stages.rate_limit.stage import RateLimitMiddleware
from asgi_guard.state import MemoryBackend
from asgi_guard.state.memory import ExpiringStore

T0 = 1_800_000_000.0
BIG = {"algo": "fixed_window", "fixed_window": {"limit": 10**9, "window": 60}}


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def hot_stage(rate_limit: dict[str, Any], **job: Any) -> tuple[RateLimitMiddleware, GuardContext]:
    """The route's rate-limit stage (on the hot path) and a context to call it with."""
    registry = RouteRegistry()
    route = registry.register(
        "/items/{resource_id}", JobConfig(rate_limit={"enabled": True, **rate_limit}, **job), methods=["GET"]
    )
    runtime = GuardRuntime(GuardSettings(_env_file=None), MemoryBackend(clock=lambda: T0))  # type: ignore[call-arg]

    def inner(scope: Any, receive: Any, send: Any) -> None:  # called, never awaited, here
        return None

    stage = build_chain(inner, route, runtime, (RateLimitMiddleware,))[0]
    assert isinstance(stage, RateLimitMiddleware) and stage._check_key is not None
    ctx = GuardContext("id", route, {}, "GET", "/items/x", "10.0.0.1", runtime, None, 1000)  # type: ignore[arg-type]
    return stage, ctx


parts = st.text(st.characters(codec="utf-8"), max_size=90)


@settings(max_examples=300, deadline=None)
@given(
    subject=st.one_of(st.none(), parts),
    address=st.one_of(st.sampled_from(["10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "unknown"]), parts),
    resource=st.one_of(st.none(), parts),
    key_by=st.sampled_from([["route", "user", "resource"], ["ip"], ["global", "resource"], ["user", "ip"]]),
)
def test_a_cached_key_is_the_general_paths_key(
    subject: str | None, address: str, resource: str | None, key_by: list[str]
) -> None:
    stage, ctx = hot_stage({**BIG, "key_by": key_by})
    used: list[str] = []
    stage._check_key = lambda key, cost: (used.append(key), (True, 1, 1.0, 0.0))[1]  # type: ignore[assignment,return-value]
    ctx.client_ip = address
    ctx.path_params = {} if resource is None else {"resource_id": resource}
    ctx.principal = None if subject is None else Principal(subject)
    scope: dict[str, Any] = {"type": "http", "headers": [], SCOPE_KEY: ctx}
    for _ in range(2):  # the first builds (and may cache) the key; the second may read the cache
        ctx.response_headers = []
        stage(scope, None, None)  # type: ignore[arg-type]
    want = stage._identity(ctx, scope, ctx.resource_id) + stage._suffix
    assert used == [want, want]


async def test_routes_sharing_a_label_keep_their_own_limits(make_client: Any) -> None:
    """Two limits of one trace label and client never read each other's state (the cache's key
    names the limit too)."""
    registry = RouteRegistry()
    shared = {"tracing": {"trace_label": "shared"}}
    registry.register(
        "/a", JobConfig(rate_limit={"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 1, "window": UNCROSSED_WINDOW}}, **shared)
    )
    registry.register(
        "/b", JobConfig(rate_limit={"enabled": True, "algo": "token_bucket", "token_bucket": {"rate_limit": 5}}, **shared)
    )
    app = Starlette(routes=[Route("/a", ok), Route("/b", ok)])
    client = make_client(GuardMiddleware(app, registry=registry, backend=MemoryBackend()))
    assert (await client.get("/a")).status_code == 200
    for _ in range(3):
        assert (await client.get("/b")).status_code == 200
    assert (await client.get("/a")).status_code == 429


def test_the_key_cache_is_bounded() -> None:
    stage, ctx = hot_stage(BIG)
    stage._check_key = lambda key, cost: (True, 1, 1.0, 0.0)  # type: ignore[assignment,return-value]
    scope: dict[str, Any] = {"type": "http", "headers": [], SCOPE_KEY: ctx}
    rl_stage._KEYS.clear()
    for i in range(rl_stage._KEYS_MAX + 10):
        ctx.client_ip = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        stage(scope, None, None)  # type: ignore[arg-type]
        assert len(rl_stage._KEYS) <= rl_stage._KEYS_MAX
    rl_stage._KEYS.clear()
    ctx.path_params = {"resource_id": "r" * (rl_stage._CACHED_PART + 1)}  # a long part is not kept
    stage(scope, None, None)  # type: ignore[arg-type]
    assert not rl_stage._KEYS


def test_cells_are_the_entries_and_touch_is_a_write() -> None:
    now = [100.0]
    store = ExpiringStore(lambda: now[0], max_keys=2)
    find, touch = store.cells()
    store.set_until("a", 1, 110.0)
    store.set_until("b", 2, 105.0)
    cell = find("a")
    assert cell == [1, 110.0] and find("c") is None
    cell[0], cell[1] = 3, 120.0
    touch("a")  # "a" is now the most recently written: a third key evicts "b"
    store.set_until("c", 4, None)
    assert store.get("a") == 3 and store.get("b") is None and store.ttl("a") == 20.0
    now[0] = 130.0
    assert find("a") == [3, 120.0]  # expired entries are found: the caller compares
    assert store.get_at("a", 130.0) is None and "a" not in store


def test_the_outer_middleware_is_still_an_asgi3_coroutine_function() -> None:
    """Its `__call__` hands the app's coroutine on (no coroutine of its own), yet servers that
    detect the interface (uvicorn's `interface="auto"`) must still see ASGI 3."""
    import asyncio

    from uvicorn.config import Config

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    middleware = GuardMiddleware(app, RouteRegistry())
    assert asyncio.iscoroutinefunction(middleware.__call__)
    config = Config(middleware)
    config.load()
    assert config.interface == "asgi3"
