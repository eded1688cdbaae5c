"""Start-up cost (issue 16): routes that share a policy build one chain at start-up, the others on
their first request, once; config errors still surface at start-up; per-route registrations (the
cache's namespace) exist before any request; the registry's matcher is built on first use."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar, get_args

import httpx
import pytest
from guardkit import UNCROSSED_WINDOW
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard import stack as stack_module
from asgi_guard.config import CreditsConfig, TelemetryConfig
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.core.stage import RouteInfo, Stage, section_key
from asgi_guard.stages.cache import purge as purge_module
from asgi_guard.stages.cache.purge import CachePurger, namespaces
from asgi_guard.state import MemoryBackend

SETTINGS = GuardSettings(_env_file=None)  # type: ignore[call-arg]
N = 40


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


class Counting(Stage[Any]):
    """Counts its constructions per route label; fails to build when the section says so."""

    name = "counting"
    section: ClassVar[str | None] = "rate_limit"
    built: ClassVar[list[str]] = []

    def __init__(self, app: Any, route: RouteInfo[Any], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        if self.config.fixed_window.limit == 13:
            raise ConfigError(f"route {route.template!r}: 13 is unlucky")
        type(self).built.append(route.label)

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return bool(config.enabled)


def _config(i: int, limit: int = 5) -> JobConfig:
    return JobConfig(
        endpoint_name=f"route{i}",
        rate_limit={
            "enabled": True,
            "algo": "fixed_window",
            "fixed_window": {"limit": limit, "window": UNCROSSED_WINDOW},
        },
    )


def _app(configs: list[JobConfig]) -> tuple[Starlette, RouteRegistry]:
    registry = RouteRegistry()
    routes = []
    for i, config in enumerate(configs):
        registry.register(f"/r{i}/{{item}}", config, methods=["GET"])
        routes.append(Route(f"/r{i}/{{item}}", ok))
    return Starlette(routes=routes), registry


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[Counting]:
    Counting.built = []
    monkeypatch.setattr(stack_module, "STAGES", (Counting,))
    return Counting


async def _get(app: Starlette, path: str) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return (await client.get(path)).status_code


async def test_routes_sharing_a_policy_build_one_chain_at_startup(counting: type[Counting]) -> None:
    app, registry = _app([_config(i) for i in range(N)])
    install(app, registry, SETTINGS, backend=MemoryBackend())
    assert counting.built == ["route0"]  # the one route that brought the policy
    assert await _get(app, "/r7/x") == 200
    assert await _get(app, "/r7/y") == 200
    assert counting.built == ["route0", "route7"]  # built on its first request, once


async def test_each_distinct_policy_is_built_at_startup(counting: type[Counting]) -> None:
    configs = [_config(i, limit=5 + i % 3) for i in range(N)]
    app, registry = _app(configs)
    install(app, registry, SETTINGS, backend=MemoryBackend())
    assert counting.built == ["route0", "route1", "route2"]


async def test_a_failing_policy_fails_at_startup_whichever_route_brings_it(
    counting: type[Counting],
) -> None:
    configs = [_config(i) for i in range(N)]
    configs[N - 1] = _config(N - 1, limit=13)
    app, registry = _app(configs)
    with pytest.raises(ConfigError, match="unlucky"):
        install(app, registry, SETTINGS, backend=MemoryBackend())


async def test_a_failed_reload_fails_again(counting: type[Counting]) -> None:
    app, registry = _app([_config(i) for i in range(3)])
    guard = install(app, registry, SETTINGS, backend=MemoryBackend())
    bad = RouteRegistry()
    bad.register("/r0/{item}", _config(0, limit=13), methods=["GET"])
    for _ in range(2):  # a failed key is not remembered as checked
        with pytest.raises(ConfigError, match="unlucky"):
            guard.swap_registry(bad)


async def test_concurrent_first_requests_build_once(counting: type[Counting]) -> None:
    app, registry = _app([_config(i, limit=1000) for i in range(3)])
    install(app, registry, SETTINGS, backend=MemoryBackend())
    statuses = await asyncio.gather(*(_get(app, f"/r2/{n}") for n in range(20)))
    assert set(statuses) == {200}
    assert counting.built.count("route2") == 1


def test_threads_racing_on_a_first_build_build_once(counting: type[Counting]) -> None:
    app, registry = _app([_config(i) for i in range(2)])
    guard = install(app, registry, SETTINGS, backend=MemoryBackend())
    route = list(registry)[1]
    lazy = guard.pipeline(route)[0]
    assert isinstance(lazy, stack_module._LazyChain)
    start = threading.Barrier(8)
    built: list[Any] = []

    def race() -> None:
        start.wait()
        built.append(lazy.build())

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(chain) for chain in built}) == 1
    assert counting.built.count("route1") == 1
    assert guard.pipeline(route)[0] is built[0]  # the table now holds the real chain


async def test_real_stages_limit_each_route_on_its_own() -> None:
    """The full stack: lazily built routes enforce their own limits (keys carry their labels)."""
    app, registry = _app([_config(i, limit=2) for i in range(N)])
    install(app, registry, SETTINGS, backend=MemoryBackend())
    for path in ("/r0/a", "/r9/a", "/r33/a"):
        assert [await _get(app, path) for _ in range(3)] == [200, 200, 429]


async def test_lazily_built_cache_routes_own_their_namespace_from_startup() -> None:
    runtime = GuardRuntime(SETTINGS, MemoryBackend())
    configs = [JobConfig(endpoint_name=f"c{i}", cache={"enabled": True}) for i in range(5)]
    app, registry = _app(configs)
    install(app, registry, runtime=runtime)
    assert sorted(namespaces(runtime)) == [f"c{i}" for i in range(5)]  # a purge reaches them all
    store = namespaces(runtime)["c3"]
    assert await _get(app, "/r3/a") == 200
    assert namespaces(runtime)["c3"] is store  # the built stage uses the same store


async def test_declared_namespaces_are_made_when_a_purge_needs_them() -> None:
    """Start-up declares the lazily built routes' namespaces without making their stores; the
    first purge makes them (a purge by an unserved route's label is not a KeyError)."""
    runtime = GuardRuntime(SETTINGS, MemoryBackend())
    app, registry = _app([JobConfig(endpoint_name=f"c{i}", cache={"enabled": True}) for i in range(4)])
    install(app, registry, runtime=runtime)
    assert sorted(runtime.existing_service(purge_module.DECLARED)) == ["c1", "c2", "c3"]  # c0: built
    assert await CachePurger(runtime).purge(routes=["c2"], tags=["any"]) == 0
    assert runtime.existing_service(purge_module.DECLARED) == {}
    assert sorted(namespaces(runtime)) == ["c0", "c1", "c2", "c3"]


@pytest.mark.valkey
@pytest.mark.parametrize("by", ["route", "tag"])
async def test_a_runtime_that_never_served_a_route_purges_what_another_cached(
    valkey_url: str, key_prefix: str, by: str
) -> None:
    """Two runtimes on one Valkey (two workers): the first caches on routes the second has not
    built; the second's purge, by route label or by tag, still reaches those entries."""

    async def tagged(request: Request) -> Response:
        return JSONResponse({"n": next(calls)}, headers={"cache-tag": "shared"})

    calls = iter(range(1000))
    settings = GuardSettings(_env_file=None, valkey_url=valkey_url, key_prefix=key_prefix)  # type: ignore[call-arg]
    configs = [JobConfig(endpoint_name=f"v{i}", cache={"enabled": True}) for i in range(3)]
    runtimes = [GuardRuntime(settings), GuardRuntime(settings)]
    apps = []
    for runtime in runtimes:
        registry = RouteRegistry()
        routes = []
        for i, config in enumerate(configs):
            registry.register(f"/r{i}/{{item}}", config, methods=["GET"])
            routes.append(Route(f"/r{i}/{{item}}", tagged))
        app = Starlette(routes=routes)
        install(app, registry, runtime=runtime)
        apps.append(app)
    try:
        transport = httpx.ASGITransport(app=apps[0])
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = await client.get("/r2/x")
            assert (await client.get("/r2/x")).json() == first.json()  # a hit
            assert runtimes[1].existing_service(purge_module.DECLARED).keys() >= {"v2"}  # not built
            selector = {"routes": ["v2"]} if by == "route" else {"tags": ["shared"]}
            assert await CachePurger(runtimes[1]).purge(**selector) == 1
            assert (await client.get("/r2/x")).json() != first.json()  # gone: a miss, a new call
    finally:
        for runtime in runtimes:
            await runtime.shutdown()


def test_section_keys_tell_settings_apart() -> None:
    a = _config(0).rate_limit
    assert section_key(a) == section_key(_config(1).rate_limit)
    assert section_key(a) != section_key(_config(0, limit=6).rate_limit)
    assert section_key(1) != section_key(True) != section_key(1.0)
    assert section_key([1, {"a": {2}}]) == section_key([1, {"a": {2}}])


def test_section_keys_of_hooks_given_as_callables() -> None:
    """A cost hook in code (not JSON): keyed by identity, so routes sharing the hook share a key."""

    def hook(ctx: Any) -> int:
        return 1

    def other(ctx: Any) -> int:
        return 2

    def limit(h: Any) -> Any:
        return JobConfig(rate_limit={"enabled": True, "cost": {"source": "hook", "hook": h}}).rate_limit

    assert section_key(limit(hook)) == section_key(limit(hook))
    assert section_key(limit(hook)) != section_key(limit(other))


def test_the_matcher_is_built_on_first_use_and_after_new_registrations() -> None:
    registry = RouteRegistry()
    registry.register("/a/{x:int}", JobConfig(endpoint_name="a"), methods=["GET"])
    found = registry.resolve("GET", "/a/7")
    assert found is not None and found[1] == {"x": 7}
    registry.register("/b/{rest:path}", JobConfig(endpoint_name="b"))
    found = registry.resolve("POST", "/b/x/y")
    assert found is not None and found[1] == {"rest": "x/y"}
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("/a/{x:int}/", JobConfig(), methods=["GET"])  # one leaf with /a/{x:int}
    with pytest.raises(ConfigError, match="must end"):
        registry.register("/c/{rest:path}/d", JobConfig())
    with pytest.raises(ConfigError, match="unknown path convertor"):
        registry.register("/c/{x:nope}", JobConfig())


class Switchable(Stage[Any]):
    """A stage whose `enabled_in` follows the runtime's state (like telemetry's log level gate)."""

    name = "switchable"
    section: ClassVar[str | None] = None
    on: ClassVar[bool] = False
    built: ClassVar[int] = 0

    def __init__(self, app: Any, route: RouteInfo[Any], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        type(self).built += 1

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True

    @classmethod
    def enabled_in(cls, config: Any, runtime: GuardRuntime) -> bool:
        return cls.on


async def test_a_later_build_has_the_stages_checked_at_startup(
    counting: type[Counting], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate that would now say yes (a tracer provider, a log level set after install) adds no
    stage that start-up never built (its app-wide hooks could no longer be registered)."""
    monkeypatch.setattr(stack_module, "STAGES", (Switchable, Counting))
    monkeypatch.setattr(Switchable, "on", False)
    monkeypatch.setattr(Switchable, "built", 0)
    app, registry = _app([_config(i) for i in range(3)])
    install(app, registry, SETTINGS, backend=MemoryBackend())
    Switchable.on = True
    assert await _get(app, "/r2/x") == 200
    assert counting.built == ["route0", "route2"]
    assert Switchable.built == 0


def _config_models() -> list[type[BaseModel]]:
    """JobConfig, the sections it composes (credits, telemetry) and every model reachable from their
    fields (annotations, unions, containers)."""
    found: list[type[BaseModel]] = []
    todo: list[Any] = [JobConfig, CreditsConfig, TelemetryConfig]
    while todo:
        kind = todo.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if kind in found:
                continue
            found.append(kind)
            todo.extend(field.annotation for field in kind.model_fields.values())
        else:
            todo.extend(get_args(kind))
    return found


def test_section_keys_rest_on_static_defaults() -> None:
    """`section_key` keys a model by the fields set: sound only while an unset field always means
    the same value. So no config model has a default made per instance (a factory other than an
    empty container) or a post-init hook that could derive one from what was set."""
    models = _config_models()
    assert len(models) > 10  # the walk reaches the stage sections
    for model in models:
        assert model.model_post_init is BaseModel.model_post_init, model
        for name, field in model.model_fields.items():
            make = field.default_factory
            if make is not None:
                made = make()  # type: ignore[call-arg]
                assert made == type(made)() and not made, f"{model.__name__}.{name}"
