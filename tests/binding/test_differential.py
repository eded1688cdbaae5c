"""Differential property: for generated route tables and request targets, the guard runs a handler's
policy exactly when the app runs that handler, and charges nothing when the app runs no handler.

The expected policy of a (route, method) is the spec's: the registry entry with the route's template
(convertors aside) that lists the method (or lists none). The router alone decides which handler runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bindkit import charging, client, settings
from fastapi import APIRouter, FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.registry import path_format

SEGMENTS = ["a", "b", "{x}", "{n:int}"]
TAIL = ["", "/{p:path}"]
METHOD_SETS: list[tuple[str, ...] | None] = [("GET",), ("POST",), ("GET", "POST"), None]
TARGET_SEGMENTS = ["a", "b", "1", "x", "", "%0A", "a%2Fb", "%0D", "m", "n"]
TARGET_METHODS = ["GET", "POST", "HEAD", "DELETE", "QUERY"]

route_spec = st.tuples(
    st.sampled_from(["", "/m", "/n"]),  # mount prefix ("" = top level)
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3),
    st.sampled_from(TAIL),
    st.sampled_from(METHOD_SETS),
    st.booleans(),  # guarded
)
target_spec = st.tuples(
    st.sampled_from(TARGET_METHODS),
    st.lists(st.sampled_from(TARGET_SEGMENTS), min_size=0, max_size=4),
    st.booleans(),  # trailing slash
)


def build(routes: list[Any], flavor: str = "starlette") -> tuple[Any, list[dict[str, Any]], list[int]]:
    """A Starlette app (prefixes are Mounts) or a FastAPI app (prefixes are included APIRouters)."""
    ran: list[int] = []
    tops: list[Any] = []
    mounts: dict[str, list[Any]] = {}
    routers: dict[str, Any] = {}
    table: list[dict[str, Any]] = []
    fast = FastAPI() if flavor == "fastapi" else None
    for index, (prefix, segments, tail, methods, guarded) in enumerate(routes):
        named = [seg.replace("{x", f"{{x{j}").replace("{n", f"{{n{j}") for j, seg in enumerate(segments)]
        path = "/" + "/".join(named) + tail

        def make(i: int) -> Any:
            async def endpoint(request: Request) -> PlainTextResponse:
                ran.append(i)
                return PlainTextResponse(str(i))

            class AnyMethod:
                async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                    ran.append(i)
                    await PlainTextResponse(str(i))(scope, receive, send)

            return endpoint if methods is not None else AnyMethod()

        if fast is not None:
            router = fast.router if not prefix else routers.setdefault(prefix, APIRouter())
            if methods is None:
                router.add_route(path, make(index))
            else:
                router.add_api_route(path, make(index), methods=list(methods))
            table.append({"template": prefix + path, "methods": methods, "guarded": guarded})
            continue
        route = Route(path, make(index), methods=list(methods) if methods else None)
        if prefix:
            if prefix not in mounts:
                mounts[prefix] = []
                tops.append(Mount(prefix, routes=mounts[prefix]))
            mounts[prefix].append(route)
        else:
            tops.append(route)
        table.append({"template": prefix + path, "methods": methods, "guarded": guarded, "route": route})
    registry = RouteRegistry()
    taken: set[tuple[str, str]] = set()
    for index, row in enumerate(table):
        if not row["guarded"]:
            continue
        fmt = path_format(row["template"])
        keys = {(fmt, m) for m in (row["methods"] or ("*",))}
        if keys & taken or any(k[0] == fmt and ("*" in (k[1], *(row["methods"] or ("*",)))) for k in taken):
            row["guarded"] = False  # the registry holds one policy per template and method
            continue
        taken |= keys
        registry.register(row["template"], JobConfig(endpoint_name=f"r{index}"), methods=row["methods"])
        row["label"] = f"r{index}"
    app: Any
    if fast is not None:
        for prefix, router in routers.items():
            fast.include_router(router, prefix=prefix)
        app = fast
    else:
        app = Starlette(routes=tops)
    install(app, registry, settings())
    return app, table, ran


def expected_label(table: list[dict[str, Any]], index: int, method: str) -> str | None:
    """The policy the spec assigns to route `index` for `method`."""
    fmt = path_format(table[index]["template"])
    for row in table:
        if "label" not in row or path_format(row["template"]) != fmt:
            continue
        methods = row["methods"]
        if methods is None or method in methods or (method == "HEAD" and "GET" in methods):
            return str(row["label"])
    return None


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["starlette", "fastapi"]),
    st.lists(route_spec, min_size=1, max_size=6),
    st.lists(target_spec, min_size=1, max_size=6),
)
def test_policy_runs_iff_the_app_runs_the_handler(flavor: str, routes: list[Any], targets: list[Any]) -> None:
    with charging() as charges:
        app, table, ran = build(routes, flavor)

        async def run() -> None:
            async with client(app) as c:
                for method, segments, slash in targets:
                    target = "/" + "/".join(segments) + ("/" if slash and segments else "")
                    ran.clear()
                    charges.clear()
                    await c.request(method, "http://testserver" + target)
                    if not ran:
                        assert charges == [], (method, target, charges)
                        continue
                    [index] = ran
                    label = expected_label(table, index, method)
                    got = [c[0] for c in charges]
                    assert got == ([label] if label else []), (method, target, index, got, label)

        asyncio.run(run())
