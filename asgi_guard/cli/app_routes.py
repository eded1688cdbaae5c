"""The routes an app really serves, compared with a RouteRegistry (`asgi-guard routes --app`).

A plain walk over Starlette's route objects: `Route` (FastAPI's `APIRoute` too), `WebSocketRoute`,
`Mount` (its sub-app's routes, prefixed), `Host`, and FastAPI's included routers (older FastAPI copies
them into `app.routes`; newer keeps one entry per include with `effective_route_contexts()`, each
context carrying the route's effective path). A mount whose app has no routes is opaque: reported as
`PREFIX/{path:path}`.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from asgi_guard.registry import ALL_METHODS, RouteRegistry

_CONVERTOR_STR = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*):str}")


@dataclass(frozen=True)
class AppRoute:
    path: str
    methods: frozenset[str]  # {"WEBSOCKET"} for a websocket route
    name: str


def load_app(target: str) -> Any:
    """Import `module:attribute` (the working directory first on sys.path, as uvicorn does)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--app takes MODULE:ATTRIBUTE, got {target!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    app: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        app = getattr(app, part)
    return app


def _routes_of(app: Any) -> list[Any] | None:
    """The route list of an app, a router or an app wrapped by `install` (None when opaque)."""
    seen = 0
    while app is not None and seen < 32:
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            return routes
        app = getattr(app, "app", None)  # a middleware-wrapped app
        seen += 1
    return None


def walk(routes: Iterable[Any], prefix: str = "") -> Iterator[AppRoute]:
    from starlette.routing import Host, Mount, Route, WebSocketRoute

    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # FastAPI's included router (FastAPI >= 0.16x)
            for context in contexts():
                if context.starlette_route is not None:
                    yield from walk([context.starlette_route], prefix)
                    continue
                original = context.original_route
                methods = getattr(original, "methods", None)
                if isinstance(original, WebSocketRoute):
                    methods = {"WEBSOCKET"}
                name = str(getattr(original, "name", "") or context.path)
                yield AppRoute(prefix + context.path, frozenset(methods or ALL_METHODS), name)
        elif isinstance(route, Mount):
            inner = _routes_of(route.app)
            if inner is None:
                yield AppRoute(prefix + route.path + "/{path:path}", ALL_METHODS, route.name or route.path)
            else:
                yield from walk(inner, prefix + route.path)
        elif isinstance(route, Host):
            inner = _routes_of(route.app)
            if inner is not None:
                yield from walk(inner, prefix)
        elif isinstance(route, WebSocketRoute):
            yield AppRoute(prefix + route.path, frozenset({"WEBSOCKET"}), route.name)
        elif isinstance(route, Route):
            methods = frozenset(route.methods) if route.methods else ALL_METHODS
            yield AppRoute(prefix + route.path, methods, route.name)


def app_routes(app: Any) -> list[AppRoute]:
    routes = _routes_of(app)
    if routes is None:
        raise ValueError("the app has no routes to compare (not a Starlette/FastAPI app or router)")
    return list(walk(routes))


def _same_template(a: str, b: str) -> bool:
    return _CONVERTOR_STR.sub(r"{\1}", a) == _CONVERTOR_STR.sub(r"{\1}", b)


def compare(
    registry: RouteRegistry, routes: list[AppRoute], ignore: Iterable[str] = ()
) -> dict[str, list[dict[str, Any]]]:
    """`unbound`: (template, method) pairs of the registry no app route serves (start-up would fail);
    `unguarded`: app (path, method) pairs no policy covers, minus paths matching an `ignore` glob.
    HEAD is left out on both sides (it follows GET)."""
    unbound: list[dict[str, Any]] = []
    for policy in registry:
        serving = [r for r in routes if _same_template(r.path, policy.template)]
        served: set[str] = set()
        for route in serving:
            served |= route.methods if "WEBSOCKET" not in route.methods else {"GET", "WEBSOCKET"}
        missing = sorted(m for m in policy.methods - {"HEAD"} if m not in served)
        if policy.methods == ALL_METHODS:
            missing = [] if serving else ["*"]
        if missing:
            unbound.append({"name": policy.name, "path": policy.template, "methods": missing})
    patterns = list(ignore)
    unguarded: list[dict[str, Any]] = []
    for route in routes:
        if any(fnmatchcase(route.path, pattern) for pattern in patterns):
            continue
        covering: set[str] = set()
        for policy in registry:
            if _same_template(route.path, policy.template):
                covering |= policy.methods
        wanted = {"GET"} if "WEBSOCKET" in route.methods else route.methods - {"HEAD"}
        missing = sorted(wanted - covering)
        if missing:
            unguarded.append({"name": route.name, "path": route.path, "methods": missing})
    return {"unbound": unbound, "unguarded": unguarded}
