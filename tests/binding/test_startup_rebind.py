"""The start-up bind skips its second walk only when nothing it would see has changed since install().

install() binds leniently (routes may still be added); start-up binds strictly. When the lenient
binding already bound every registry entry and neither a route (the route watch), a registry entry
nor a declared policy (`guard_router`, `@guard`) changed since, the strict bind would make the same
binding, so it is skipped (issue 16: start-up time). Each way a policy or a route can arrive after
install() is attacked here: it must still be enforced from the first request.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import pytest
from bindkit import JWT, bearer, client, settings
from fastapi import APIRouter, FastAPI
from guardkit import UNCROSSED_WINDOW
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router
from starlette.testclient import TestClient

from asgi_guard import JobConfig, RouteRegistry, guard, guard_router, install, stack
from asgi_guard.binding.bind import BoundHandle, Planner
from asgi_guard.binding.declare import ATTR
from asgi_guard.binding.routes import walk

LIMIT = {
    "rate_limit": {
        "enabled": True,
        "algo": "fixed_window",
        "fixed_window": {"limit": 1, "window": UNCROSSED_WINDOW},
    }
}


async def page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("page")


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the route-tree walks (one per full bind)."""
    seen: list[int] = []

    def counting(router: Any) -> Any:
        seen.append(1)
        return walk(router)

    monkeypatch.setattr(stack, "walk", counting)
    return seen


def _mounted() -> tuple[Starlette, Router]:
    inner = Router(routes=[Route("/page", page)])
    return Starlette(routes=[Route("/open", page), Mount("/v1", app=inner)]), inner


# -- nothing changed: one walk (at install) -------------------------------------------------------
async def test_an_unchanged_app_is_walked_once_and_still_guarded(walks: list[int]) -> None:
    app, inner = _mounted()
    guard_router(inner, JobConfig(**JWT))
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/v1/page")).status_code == 401
        assert (await c.get("/v1/page", headers=bearer())).status_code == 200
        assert (await c.get("/open")).status_code == 200
    assert len(walks) == 1


def test_an_incomplete_install_binding_is_checked_again_at_start_up(walks: list[int]) -> None:
    app, _ = _mounted()
    registry = RouteRegistry()
    registry.register("/late", JobConfig(**JWT), methods=["GET"])
    install(app, registry, settings())  # /late does not exist yet
    app.router.routes.append(Route("/late", page))
    with TestClient(app) as tc:
        assert tc.get("/late").status_code == 401
    assert len(walks) == 2


# -- a policy declared after install ----------------------------------------------------------------
@pytest.mark.parametrize("lifespan", [True, False])
async def test_guard_router_on_a_mounted_router_after_install_is_enforced(lifespan: bool) -> None:
    app, inner = _mounted()
    install(app, None, settings())
    guard_router(inner, JobConfig(**JWT))  # after install: no route changed, a policy did
    await _expect(app, lifespan, {"/v1/page": 401, "/open": 200})


@pytest.mark.parametrize("lifespan", [True, False])
async def test_guard_router_on_an_included_fastapi_router_after_install_is_enforced(lifespan: bool) -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/page")
    async def included() -> dict[str, str]:
        return {}

    app.include_router(router, prefix="/v1")
    install(app, None, settings())
    guard_router(router, JobConfig(**JWT))
    await _expect(app, lifespan, {"/v1/page": 401})


@pytest.mark.parametrize("lifespan", [True, False])
async def test_guard_on_an_endpoint_after_install_is_enforced(lifespan: bool) -> None:
    async def late(request: Request) -> PlainTextResponse:
        return PlainTextResponse("late")

    app = Starlette(routes=[Route("/late", late), Route("/open", page)])
    install(app, None, settings())
    guard(JobConfig(**JWT))(late)
    await _expect(app, lifespan, {"/late": 401, "/open": 200})


@pytest.mark.parametrize("lifespan", [True, False])
async def test_a_policy_replaced_after_install_is_the_one_enforced(lifespan: bool) -> None:
    app, inner = _mounted()
    guard_router(inner, JobConfig())
    install(app, None, settings())
    guard_router(inner, JobConfig(**JWT))
    await _expect(app, lifespan, {"/v1/page": 401})


async def test_a_policy_removed_after_install_is_no_longer_enforced() -> None:
    app, inner = _mounted()
    guard_router(inner, JobConfig(**JWT))
    install(app, None, settings())
    delattr(inner, ATTR)
    await _expect(app, False, {"/v1/page": 200})


# -- a route or a registry entry added after install -----------------------------------------------
def test_a_route_the_lifespan_adds_with_its_own_policy_is_enforced() -> None:
    @guard(JobConfig(**JWT))
    async def late(request: Request) -> PlainTextResponse:
        return PlainTextResponse("late")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        app.router.routes.append(Route("/late", late))
        yield

    app = Starlette(routes=[Route("/open", page)], lifespan=lifespan)
    install(app, None, settings())
    with TestClient(app) as tc:
        assert tc.get("/late").status_code == 401
        assert tc.get("/late", headers=bearer()).status_code == 200
        assert tc.get("/open").status_code == 200


@pytest.mark.parametrize("lifespan", [True, False])
async def test_a_registry_entry_added_after_install_is_enforced(lifespan: bool) -> None:
    app, _ = _mounted()
    registry = RouteRegistry()
    install(app, registry, settings())
    registry.register("/open", JobConfig(**JWT), methods=["GET"])  # the route existed already
    await _expect(app, lifespan, {"/open": 401, "/v1/page": 200})


# -- property: whatever changed after install, the binding is a fresh strict binding's ------------
ACTIONS = ("router_policy", "endpoint_policy", "replace_policy", "add_route", "register", "mount_app")


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(ACTIONS), max_size=4))
def test_the_start_up_binding_equals_a_fresh_strict_binding(actions: list[str]) -> None:
    async def own(request: Request) -> PlainTextResponse:
        return PlainTextResponse("own")

    inner = Router(routes=[Route("/page", page), Route("/own", own)])
    mount = Mount("/v1", app=inner)
    app = Starlette(routes=[Route("/open", page), mount])
    guard_router(inner, JobConfig(**LIMIT))
    registry = RouteRegistry()
    installed = install(app, registry, settings())
    for action in actions:
        if action == "router_policy":
            guard_router(inner, JobConfig(**JWT))
        elif action == "endpoint_policy":
            guard(JobConfig(**JWT))(own)
        elif action == "replace_policy":
            guard_router(inner, JobConfig(**{**JWT, **LIMIT}))
        elif action == "add_route":
            inner.routes.append(Route(f"/added{len(inner.routes)}", page))
        elif action == "register" and not any(entry.template == "/open" for entry in registry):
            registry.register("/open", JobConfig(**JWT), methods=["GET"])
        elif action == "mount_app":
            mount.app = Router(routes=[Route("/page", own)])
    installed.bind()  # what start-up runs
    leaves, _ = walk(app.router)
    expected = {id(plan.leaf.route): plan for plan in Planner(registry).plan(leaves)}
    for leaf in leaves:
        bound = leaf.route.__dict__.get(leaf.slot)
        want = expected[id(leaf.route)]
        if want.empty:
            assert not isinstance(bound, BoundHandle) or (bound.any is None and not bound.by_method)
            continue
        assert isinstance(bound, BoundHandle)
        for method in sorted(leaf.methods or {"GET"}):
            got = bound.by_method.get(method, bound.any)
            wanted = want.by_method.get(method, want.any)
            assert (got is None) == (wanted is None), (actions, leaf.template, method)
            if got is not None and wanted is not None:
                assert got.config.model_dump() == wanted.config.model_dump(), (actions, leaf.template)


async def _expect(app: Any, lifespan: bool, statuses: dict[str, int]) -> None:
    """The statuses of anonymous GETs, served with (TestClient) or without (httpx) a lifespan."""
    if lifespan:
        with TestClient(app) as tc:
            got = {path: tc.get(path).status_code for path in statuses}
    else:
        async with client(app) as c:
            got = {path: (await c.get(path)).status_code for path in statuses}
    assert got == statuses
