"""Routes changed while serving, and a router's `default` app: the guard binds what the router serves.

Every routes list the guard walked counts its own mutations (`WatchedRoutes`), so a route added,
removed or replaced in place, at any depth, is bound before the next request is routed; a router's
`default` app is a leaf of its own (deny mode and router defaults reach it).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from bindkit import JWT, bearer, client, settings
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router

from asgi_guard import JobConfig, guard, guard_router, install
from asgi_guard.binding.routes import WatchedRoutes, find_router, walk

RAN: list[str] = []


async def public(request: Request) -> PlainTextResponse:
    RAN.append("public " + request.url.path)
    return PlainTextResponse("public")


@guard(JobConfig(**JWT))
async def secret(request: Request) -> PlainTextResponse:
    RAN.append("secret " + request.url.path)
    return PlainTextResponse("secret")


async def legacy(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI fallback app, as a Router's `default`."""
    if scope["type"] != "http":
        return
    RAN.append("legacy " + scope["path"])
    await PlainTextResponse("legacy")(scope, receive, send)


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    RAN.clear()
    yield
    RAN.clear()


# -- mutations of a routes list, any kind, any depth --------------------------------------------
MUTATIONS = {
    "replace": lambda routes, r: routes.__setitem__(0, r),
    "slice": lambda routes, r: routes.__setitem__(slice(0, 1), [r]),
    "insert": lambda routes, r: routes.insert(0, r),
    "append-after-delete": lambda routes, r: (routes.__delitem__(0), routes.append(r)),
    "pop-then-extend": lambda routes, r: (routes.pop(0), routes.extend([r])),
    "iadd": lambda routes, r: (routes.clear(), routes.__iadd__([r])),
    "remove-then-insert": lambda routes, r: (routes.remove(routes[0]), routes.insert(0, r)),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("depth", [0, 1, 2])
async def test_any_mutation_of_any_routes_list_is_bound_before_it_serves(mutation: str, depth: int) -> None:
    inner = Router(routes=[Route("/page", public)])
    tree: Any = inner
    for _ in range(depth):
        tree = Router(routes=[Mount("/m", app=tree)])
    app = Starlette(routes=[Mount("", app=tree)] if depth else [Route("/page", public)])
    target = "/m" * depth + "/page"
    owner = inner if depth else app.router
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get(target)).status_code == 200
        MUTATIONS[mutation](owner.routes, Route("/page", secret))
        assert (await c.get(target)).status_code == 401
        assert (await c.get(target, headers=bearer())).status_code == 200
    assert RAN == ["public " + target, "secret " + target]


async def test_a_routes_list_replaced_whole_and_then_mutated_is_bound() -> None:
    app = Starlette(routes=[Route("/page", public)])
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/page")).status_code == 200
        app.router.routes = [Route("/other", public)]  # a plain list again
        assert (await c.get("/other")).status_code == 200
        app.router.routes[0] = Route("/other", secret)
        assert (await c.get("/other")).status_code == 401
    assert RAN == ["public /page", "public /other"]


async def test_a_mounted_app_swapped_for_another_is_bound() -> None:
    mount = Mount("/v1", app=Router(routes=[Route("/page", public)]))
    app = Starlette(routes=[mount])
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/v1/page")).status_code == 200
        mount.app = Router(routes=[Route("/page", secret)])
        assert (await c.get("/v1/page")).status_code == 401
    assert RAN == ["public /v1/page"]


async def test_a_fastapi_route_replaced_in_place_is_bound() -> None:
    app = FastAPI()

    @app.get("/page")
    async def page() -> dict[str, str]:
        RAN.append("public")
        return {"page": "public"}

    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/page")).status_code == 200
        index = next(i for i, r in enumerate(app.router.routes) if getattr(r, "path", "") == "/page")
        app.router.routes[index] = Route("/page", secret)
        assert (await c.get("/page")).status_code == 401
    assert RAN == ["public"]


def test_watched_routes_is_a_list_for_everyone_else() -> None:
    routes = WatchedRoutes([1, 2, 3])
    assert routes == [1, 2, 3] and isinstance(routes, list)
    before = routes.version
    routes.sort(reverse=True)
    routes += [0]
    routes *= 1
    assert routes == [3, 2, 1, 0] and routes.version == before + 3
    assert type(copy.copy(routes)) is list and copy.deepcopy(routes) == [3, 2, 1, 0]
    assert pickle.loads(pickle.dumps(routes)) == [3, 2, 1, 0]
    assert routes[1:3] == [2, 1] and routes.version == before + 3  # reads count nothing


def test_the_watch_costs_per_router_not_per_route() -> None:
    """The per-request check reads the same attributes for 10 routes as for 2,000."""
    for count in (10, 2000):
        app = Starlette(routes=[Route(f"/r{i}", public) for i in range(count)])
        _, watch = walk(find_router(app))
        assert len(watch.entries) == 1 and watch.apps == []
        assert not watch.changed()


# -- a Router's default app ---------------------------------------------------------------------
def default_app(where: str) -> Starlette:
    if where == "top":
        return Starlette(routes=[Mount("/", app=Router(routes=[Route("/page", public)], default=legacy))])
    if where == "mounted":
        return Starlette(routes=[Mount("/legacy", app=Router(routes=[], default=legacy))])
    # a default that is a router of its own, whose own default is the legacy app
    return Starlette(
        routes=[
            Mount("/", app=Router(routes=[], default=Router(routes=[Route("/x", public)], default=legacy)))
        ]
    )


@pytest.mark.parametrize("where", ["top", "mounted", "nested"])
async def test_deny_mode_covers_every_routers_default(where: str) -> None:
    app = default_app(where)
    install(app, None, settings(unregistered="deny"))
    async with client(app) as c:
        for path in ("/transfer", "/legacy/transfer", "/legacy/", "/x/y"):
            assert (await c.post(path)).status_code in (404, 403), path
    assert not any(r.startswith("legacy") for r in RAN)


async def test_router_defaults_apply_to_its_default_app() -> None:
    """`guard_router` on a Mount: its sub-router's fallback app is under the same policy."""
    app = Starlette(
        routes=[guard_router(Mount("/legacy", app=Router(routes=[], default=legacy)), JobConfig(**JWT))]
    )
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/legacy/anything")).status_code == 401
        assert (await c.get("/legacy/anything", headers=bearer())).status_code == 200
    assert RAN == ["legacy /legacy/anything"]


async def test_a_default_without_a_policy_still_serves_outside_deny_mode() -> None:
    app = default_app("mounted")
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/legacy/anything")).status_code == 200
    assert RAN == ["legacy /legacy/anything"]


async def test_a_default_set_while_serving_is_denied() -> None:
    inner = Router(routes=[Route("/page", public)])
    app = Starlette(routes=[Mount("/v1", app=inner)])
    install(app, None, settings(unregistered="deny"))
    async with client(app) as c:
        assert (await c.get("/v1/nothing")).status_code == 404
        inner.default = legacy
        assert (await c.get("/v1/nothing")).status_code == 404
    assert RAN == []


# -- property: any sequence of mutations, the policy runs iff the served route is guarded ------
_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "insert", "delete", "append"]),
        st.sampled_from(["top", "inner"]),
        st.integers(0, 3),
        st.sampled_from(["public", "secret"]),
    ),
    min_size=1,
    max_size=8,
)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops, deny=st.booleans())
async def test_mutations_while_serving_never_serve_a_guarded_route_unguarded(
    ops: list[Any], deny: bool
) -> None:
    inner = Router(routes=[Route("/p0", public), Route("/p1", secret)])
    app = Starlette(routes=[Route("/p0", public), Mount("/in", app=inner)])
    install(app, None, settings(unregistered="deny" if deny else "allow"))
    endpoints = {"public": public, "secret": secret}
    async with client(app) as c:
        for op, where, index, kind in ops:
            routes = app.router.routes if where == "top" else inner.routes
            path = f"/p{index}"
            route = Route(path, endpoints[kind])
            if op == "set" and routes:
                routes[index % len(routes)] = route
            elif op == "insert":
                routes.insert(index, route)
            elif op == "delete" and routes:
                del routes[index % len(routes)]
            else:
                routes.append(route)
            RAN.clear()
            target = path if where == "top" else "/in" + path
            response = await c.get(target)
            # the secret handler never runs without a token; in deny mode an undeclared (public)
            # route is refused too
            assert not any(r.startswith("secret") for r in RAN), (ops, target)
            allowed = (401, 404) if deny else (200, 401, 404)
            assert response.status_code in allowed, (ops, target, response.status_code)
            assert (response.status_code == 200) == bool(RAN), (ops, target)


@pytest.mark.parametrize("deny", [True, False])
def test_binding_is_stable_once_bound(deny: bool) -> None:
    """After binding (defaults patched included), the watch sees no change: no rebind per request."""
    from asgi_guard import guard_router

    app = Starlette(
        routes=[
            Mount("/l", app=Router(routes=[Route("/page", public)], default=legacy)),
            guard_router(Mount("/g", app=Router(routes=[], default=legacy)), JobConfig(**JWT)),
            Mount("/m", app=Router(routes=[])),
        ]
    )
    guard = install(app, None, settings(unregistered="deny" if deny else "allow"))
    assert guard._watch is not None and not guard._watch.changed()
    guard.bind()
    assert not guard._watch.changed()
