"""Walk an app's route tree the way its router dispatches, yielding each place a request is handed to.

Starlette `Route`/`WebSocketRoute` (and FastAPI's `APIRoute`/`APIWebSocketRoute` subclasses) are
leaves; `Mount` and `Host` are descended (a mount of something without routes, such as StaticFiles,
is a leaf of its own). FastAPI >= 0.120 keeps `include_router` routers as live `_IncludedRouter`
entries whose effective routes are built lazily: an `APIRoute` is dispatched through its original
object's `handle`, while plain Starlette routes, WebSocket routes and mounts of an included router are
dispatched through copies FastAPI makes per inclusion. Only this module knows those internals.

A router's `default` app (what serves every path no route matches: `Router(default=legacy_app)`) is a
leaf too, as is the default of each router below a Mount or Host: deny mode and router defaults reach
it (`Leaf.slot == "default"`). So is each group of FastAPI frontend routes (`router.frontend(...)`).

The watch: each routes list walked is swapped for a `WatchedRoutes` (a list that counts its own
mutations), so a route appended, removed or replaced in place (`router.routes[i] = Route(...)`) at any
depth is seen before the next request is routed, at a cost per request of a few attribute reads per
router and mount, never per route.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import BaseRoute, Host, Mount, Route, Router, WebSocketRoute

from asgi_guard.binding.declare import declared
from asgi_guard.config import JobConfig
from asgi_guard.registry import path_format


def _included_type() -> type[Any] | None:
    """FastAPI's `_IncludedRouter`, if FastAPI is in use. Not imported here: an app that includes
    routers has imported FastAPI already, and a plain Starlette app should not pay for FastAPI (nor
    for the OpenTelemetry its telemetry module imports)."""
    return getattr(sys.modules.get("fastapi.routing"), "_IncludedRouter", None)


@dataclass(eq=False, slots=True)
class Leaf:
    """One route object the router hands requests to, and what the guard needs to know about it.
    Slotted (one per route, kept while bound: ~100 bytes instead of ~330 with a `__dict__`)."""

    route: BaseRoute  # the object whose `handle` the router calls
    template: str | None  # the full path template below the app's root (None: unknown route type)
    protocol: str  # "http", "websocket", "mount" (any scope type), "other"
    methods: frozenset[str] | None  # what `handle` serves without a 405 (None: every method)
    defaults: tuple[JobConfig, ...]  # router-level defaults, outermost first
    declared: JobConfig | None  # the endpoint's own `@guard(...)`
    in_schema: bool  # listed in this FastAPI app's OpenAPI document (not below a Mount/Host)
    slot: str = "handle"  # the attribute the router calls: a route's `handle`, a router's `default`
    source: Any = None  # the object `declared` was read from (the endpoint, the mounted app, ...)

    @property
    def path_format(self) -> str | None:
        return None if self.template is None else path_format(self.template)


class WatchedRoutes(list[Any]):
    """A router's routes list that counts its mutations (`version`), so the guard notices a route
    added, removed or replaced in place without comparing routes on every request. It is a list:
    the router, FastAPI and the app's code use it as before; copies and pickles are plain lists.

    While the app serves, the guard also sets `listener`: called right after each mutation, it binds
    the change before the mutating code goes on, so no request can reach a new route unbound (the
    per-request check alone left a window: a request past that check, awaiting in an inner
    middleware while the route is added, would be routed to it unbound)."""

    __slots__ = ("listener", "version")

    def __init__(self, routes: Any = ()) -> None:
        super().__init__(routes)
        self.version = 0
        self.listener: Callable[[], None] | None = None

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (list, (list(self),))

    def _mutated(self) -> None:
        self.version += 1
        if self.listener is not None:
            self.listener()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._mutated()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._mutated()

    def __iadd__(self, other: Any) -> Any:  # type: ignore[misc]
        result = super().__iadd__(other)
        self._mutated()
        return result

    def __imul__(self, count: Any) -> Any:  # type: ignore[misc]
        result = super().__imul__(count)
        self._mutated()
        return result

    def append(self, value: Any) -> None:
        super().append(value)
        self._mutated()

    def extend(self, values: Any) -> None:
        super().extend(values)
        self._mutated()

    def insert(self, index: Any, value: Any) -> None:
        super().insert(index, value)
        self._mutated()

    def pop(self, index: Any = -1) -> Any:
        value = super().pop(index)
        self._mutated()
        return value

    def remove(self, value: Any) -> None:
        super().remove(value)
        self._mutated()

    def clear(self) -> None:
        super().clear()
        self._mutated()

    def reverse(self) -> None:
        super().reverse()
        self._mutated()

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        super().sort(key=key, reverse=reverse)
        self._mutated()


_METHOD_SETS: dict[frozenset[str], frozenset[str]] = {}


def _methods(methods: Any) -> frozenset[str] | None:
    """A route's methods as one shared frozenset per distinct set (10,000 routes share a few)."""
    if not methods:
        return None
    found = frozenset(methods)
    if len(_METHOD_SETS) < 1024:
        return _METHOD_SETS.setdefault(found, found)
    return found


@dataclass
class Watch:
    """What the route tree looked like when bound; `changed()` is a few attribute reads per router
    and mount, whatever the number of routes."""

    # (router, its routes list, that list's mutation count (or -1 - its length, for a list the
    # guard could not swap), FastAPI's version, its default app)
    entries: list[tuple[Any, Any, int, int, Any]]
    # (Mount or Host, the app it hands requests to): a mounted app swapped for another
    apps: list[tuple[Any, Any]] = field(default_factory=list)
    active: set[int] = field(default_factory=set)  # while walking: the routers being descended
    # (router, Mount, Host or mounted app, the `guard_router` config read from it): routers' defaults
    marks: list[tuple[Any, JobConfig | None]] = field(default_factory=list)

    def redeclared(self, leaves: Iterable[Leaf]) -> bool:
        """Whether a policy was declared, replaced or removed since the walk (`guard_router` on a
        router, `@guard` on an endpoint): one attribute read per router and per leaf."""
        if any(declared(owner) is not found for owner, found in self.marks):
            return True
        return any(leaf.source is not None and declared(leaf.source) is not leaf.declared for leaf in leaves)

    def changed(self) -> bool:
        for owner, routes, count, version, default in self.entries:
            if owner.routes is not routes:
                return True
            if (routes.version if count >= 0 else -1 - len(routes)) != count:
                return True
            if version >= 0 and owner._routes_version != version:
                return True
            current = owner.default  # bound: a BoundHandle around the app recorded here
            if current is not default and getattr(current, "original", None) is not default:
                return True
        return bool(self.apps) and any(route.app is not app for route, app in self.apps)


def find_router(app: Any) -> Any:
    """The Starlette/FastAPI router an ASGI app (or middleware chain) dispatches through, or None."""
    seen: set[int] = set()
    while app is not None and id(app) not in seen:
        seen.add(id(app))
        if isinstance(app, Router):
            return app
        router = getattr(app, "router", None)
        if isinstance(router, Router):
            return router
        app = getattr(app, "app", None)
    return None


def walk(router: Any) -> tuple[list[Leaf], Watch]:
    """Every leaf below `router`, in dispatch order, and a watch on the lists that hold them."""
    watch = Watch([])
    leaves = list(_walk_router(router, "", (), True, watch, set()))
    return leaves, watch


def _mark(owner: Any, defaults: tuple[JobConfig, ...], watch: Watch) -> tuple[JobConfig, ...]:
    found = declared(owner)
    watch.marks.append((owner, found))
    return defaults if found is None else (*defaults, found)


def _watch(router: Any, watch: Watch, seen: set[int]) -> None:
    if id(router) in seen:
        return
    seen.add(id(router))
    routes = router.routes
    if not isinstance(routes, WatchedRoutes):
        with contextlib.suppress(AttributeError, TypeError):  # read-only: by identity and length
            router.routes = routes = WatchedRoutes(routes)
    count = routes.version if isinstance(routes, WatchedRoutes) else -1 - len(routes)
    version = getattr(router, "_routes_version", -1)
    watch.entries.append(
        (
            router,
            routes,
            count,
            version if isinstance(version, int) else -1,
            _unbound(getattr(router, "default", None)),
        )
    )


def _unbound(app: Any) -> Any:
    """The app a bound `default` stands in for (itself when not bound)."""
    from asgi_guard.binding.bind import BoundHandle  # bind.py imports this module

    return app.original if isinstance(app, BoundHandle) else app


def _walk_router(
    router: Any, prefix: str, defaults: tuple[JobConfig, ...], schema: bool, watch: Watch, seen: set[int]
) -> Iterator[Leaf]:
    # A router reached twice (one app mounted at two prefixes) is walked each time: its routes are
    # then leaves under both paths, and the planner refuses different policies for one route object.
    if id(router) in watch.active:  # mounted inside itself
        return
    _watch(router, watch, seen)
    defaults = _mark(router, defaults, watch)
    watch.active.add(id(router))
    try:
        for route in list(router.routes):
            yield from _walk_route(route, prefix, defaults, schema, watch, seen)
        yield from _frontends(router, defaults)
        yield from _walk_default(router, prefix, defaults, watch, seen)
    finally:
        watch.active.discard(id(router))


def _frontends(router: Any, defaults: tuple[JobConfig, ...]) -> Iterator[Leaf]:
    """FastAPI's frontend routes (`router.frontend("/", directory=...)`): groups the router tries
    after its routes, before its default. Each group is a leaf of its own (every path it serves)."""
    for group in list(getattr(router, "_low_priority_routes", ())):
        if isinstance(group, BaseRoute):
            yield Leaf(group, None, "mount", None, defaults, None, False)


def _walk_default(
    router: Any, prefix: str, defaults: tuple[JobConfig, ...], watch: Watch, seen: set[int]
) -> Iterator[Leaf]:
    """The app a router hands every unmatched request to, unless it is the router's own 404."""
    default = _unbound(getattr(router, "default", None))
    if default is None or getattr(default, "__func__", None) is Router.not_found:
        return
    sub, chain, own = _descend(default)
    for app in chain:
        defaults = _mark(app, defaults, watch)
    if sub is not None and not own:  # a router (or app) of its own: its routes, under the same prefix
        yield from _walk_router(sub, prefix, defaults, False, watch, seen)
    elif sub is None:
        yield Leaf(router, None, "mount", None, defaults, declared(default), False, "default", default)


def _http_leaf(
    route: Route, template: str, methods: Any, defaults: tuple[JobConfig, ...], schema: bool
) -> Leaf:
    """An HTTP route's leaf: its own `handle`, the policy declared on its endpoint."""
    endpoint = route.endpoint
    return Leaf(
        route, template, "http", _methods(methods), defaults, declared(endpoint), schema, "handle", endpoint
    )


def _walk_route(
    route: Any, prefix: str, defaults: tuple[JobConfig, ...], schema: bool, watch: Watch, seen: set[int]
) -> Iterator[Leaf]:
    if (included := _included_type()) is not None and isinstance(route, included):
        yield from _walk_included(route, prefix, defaults, schema, watch, seen)
    elif isinstance(route, Route):
        yield _http_leaf(route, prefix + route.path, route.methods, defaults, schema)
    elif isinstance(route, WebSocketRoute):
        endpoint = route.endpoint
        yield Leaf(
            route,
            prefix + route.path,
            "websocket",
            None,
            defaults,
            declared(endpoint),
            False,
            "handle",
            endpoint,
        )
    elif isinstance(route, Mount):
        watch.apps.append((route, route.app))
        inner = _mounted_app(route)
        sub, chain, own = _descend(inner)
        mounted = _mark(route, defaults, watch)
        for app in chain:
            mounted = _mark(app, mounted, watch)
        if sub is not None and not own:
            yield from _walk_router(sub, prefix + route.path, mounted, False, watch, seen)
        elif sub is None:
            template = prefix + route.path + "/{path:path}"
            yield Leaf(route, template, "mount", None, mounted, declared(inner), False, "handle", inner)
    elif isinstance(route, Host):
        watch.apps.append((route, route.app))
        sub, chain, own = _descend(route.app)
        hosted = _mark(route, defaults, watch)
        for app in chain:
            hosted = _mark(app, hosted, watch)
        if sub is not None and not own:
            yield from _walk_router(sub, prefix, hosted, False, watch, seen)
        elif sub is None:  # a bare app behind a Host: one leaf, so deny mode and defaults reach it
            yield Leaf(route, None, "mount", None, hosted, declared(route.app), False, "handle", route.app)
    elif isinstance(route, BaseRoute):
        yield Leaf(route, None, "other", None, defaults, None, False)


def _mounted_app(mount: Mount) -> Any:
    """The app a Mount serves: its `_base_app` below the Mount's own middleware (`.app` chains), or
    `mount.app` itself when the app replaced that (`mount.app = other`)."""
    base = getattr(mount, "_base_app", None)
    app: Any = mount.app
    if base is None:
        return app
    # what `mount.app` was when the guard first saw it: the Mount's middleware around `_base_app`
    # even when that middleware keeps its inner app under another name than `.app`
    if mount.__dict__.setdefault("_asgi_guard_app", app) is app:
        return base
    seen: set[int] = set()
    while app is not None and id(app) not in seen:
        if app is base:
            return base
        seen.add(id(app))
        app = getattr(app, "app", None)
    return mount.app


def _guards_itself(app: Any) -> bool:
    """A mounted Starlette app with its own asgi-guard middleware binds its own routes."""
    if type(app).__name__ == "GuardMiddleware":
        return True
    for entry in getattr(app, "user_middleware", ()):
        cls = getattr(entry, "cls", None)
        if getattr(cls, "__name__", "") == "GuardMiddleware":
            return True
    return False


def _descend(app: Any) -> tuple[Any, list[Any], bool]:
    """The router a mounted app dispatches through, looking through middleware wrappers (`.app`
    chains, e.g. `Mount("/v2", CORSMiddleware(sub_app))`), the apps on the way (outermost first, for
    their `guard_router` defaults), and whether one of them guards itself. (None, ..) for an app
    without a router: the mount is then a leaf of its own."""
    chain: list[Any] = []
    own = False
    seen: set[int] = set()
    while app is not None and id(app) not in seen:
        seen.add(id(app))
        own = own or _guards_itself(app)
        if isinstance(app, Router):
            return app, chain, own
        chain.append(app)
        router = getattr(app, "router", None)
        if isinstance(router, Router):
            return router, chain, own
        app = getattr(app, "app", None)
    return None, chain, own


def _walk_included(
    included: Any, prefix: str, defaults: tuple[JobConfig, ...], schema: bool, watch: Watch, seen: set[int]
) -> Iterator[Leaf]:
    """An `_IncludedRouter`: its effective candidates carry the prefixed paths and the copies."""
    original = included.original_router
    _watch(original, watch, seen)
    defaults = _mark(original, defaults, watch)
    if getattr(original, "_low_priority_routes", None):
        # FastAPI dispatches an included router's frontend groups through contexts that captured
        # each group's `handle` when built: have them rebuilt (after this binding patched it)
        with contextlib.suppress(AttributeError):
            included._effective_low_priority_routes_version = None
        yield from _frontends(original, defaults)
    for candidate in included.effective_candidates():
        if (kind := _included_type()) is not None and isinstance(candidate, kind):
            yield from _walk_included(candidate, prefix, defaults, schema, watch, seen)
            continue
        route = candidate.original_route
        copy = candidate.starlette_route
        if isinstance(route, Route) and copy is None:  # an APIRoute: its own handle, prefixed path
            yield _http_leaf(route, prefix + candidate.path, candidate.methods, defaults, schema)
        elif copy is not None:
            yield from _walk_route(copy, prefix, defaults, schema, watch, seen)
