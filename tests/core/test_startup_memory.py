"""Start-up memory per route (issue 16: 10,000 routes under 20 MiB): budgets with head-room, so a
per-route object growing a `__dict__` or a table made up front is caught, not a byte count."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.stages.cache.memory import MemoryCacheStore

N = 2000


async def endpoint(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def held(build: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes `build()` still holds once it returns (tracemalloc), and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, kept
    finally:
        tracemalloc.stop()


def test_registering_and_binding_a_route_costs_under_a_kilobyte() -> None:
    configs = [JobConfig() for _ in range(N)]
    app = Starlette(routes=[Route(f"/svc{i}/items/{{item_id}}", endpoint) for i in range(N)])
    runtime = GuardRuntime(GuardSettings(_env_file=None, jwt_secret="x" * 32))  # type: ignore[call-arg]

    def build() -> Any:
        registry = RouteRegistry()
        for i, config in enumerate(configs):
            registry.register(f"/svc{i}/items/{{item_id}}", config, methods=["GET"])
        guard = install(app, registry, runtime=runtime)
        guard.bind()  # the start-up bind: nothing changed since install
        return guard

    size, _ = held(build)
    # measured: ~0.7 KB a route (1.57 KB before) (registry entry, leaf, plan, bound handle, pipeline stand-in)
    assert size / N < 1024, size / N


def test_an_unused_embedded_cache_store_makes_no_tables() -> None:
    def clock() -> float:
        return 0.0

    size, _stores = held(lambda: [MemoryCacheStore("lru", 100, 60.0, clock) for _ in range(N)])
    assert size / N < 200, size / N  # its slots alone (the five tables: ~0.6 KB)


async def test_a_lazily_made_table_behaves_as_one_made_up_front() -> None:
    clock = [0.0]
    store = MemoryCacheStore("lru", 2, 60.0, lambda: clock[0], max_per_owner=1)
    assert await store.get("missing") is None
    from asgi_guard.core.http import CachedResponse

    value = CachedResponse(200, [], b"x")
    assert await store.set("a", value, owner="alice") == []
    assert await store.set("b", value, owner="alice") == ["a"]  # alice's own bound of one
    hit = await store.get("b")
    assert hit is not None and hit[0] is value
    try:
        store.missing_attribute
    except AttributeError as exc:
        assert "missing_attribute" in str(exc)
    else:
        raise AssertionError("an unknown attribute must still raise AttributeError")
