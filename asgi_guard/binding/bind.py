"""Bind policies to route objects: decide each leaf's per-method policy, then patch its `handle`.

The router calls `route.handle(scope, receive, send)` once it has chosen the route (after matching,
`root_path`, mounts and redirects, exactly as it serves them); for FastAPI included routers that is the
original `APIRoute`'s `handle` as well. `BoundHandle` stands in for that method on the instance: it
leaves 405s to the route, runs the route's prebuilt pipeline around the original `handle` for the
methods that have a policy, and (in deny mode) refuses those that have none. A router's `default`
app (what serves unmatched paths) is bound the same way, through the router's `default` attribute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from asgi_guard.binding.declare import layered
from asgi_guard.binding.routes import Leaf
from asgi_guard.config import JobConfig
from asgi_guard.core.errors import ConfigError
from asgi_guard.registry import ALL_METHODS, CompiledRoute, RouteRegistry, path_format

if TYPE_CHECKING:
    from asgi_guard.stack import Guard

Handle = Callable[[Scope, Receive, Send], Any]


class BoundHandle:
    """The instance-level `handle` of a bound route (one per route object, rebound in place)."""

    __slots__ = ("any", "by_method", "deny", "guard", "methods", "original")

    def __init__(self, original: Handle, guard: Guard) -> None:
        self.original = original
        self.guard = guard
        self.methods: frozenset[str] | None = None
        self.by_method: dict[str, CompiledRoute] = {}
        self.any: CompiledRoute | None = None
        self.deny = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The coroutine that serves the request (a plain function handing one on, not a coroutine
        of its own: the router only awaits what it returns, and each layer costs every request)."""
        if scope["type"] == "http":
            method = scope["method"]
            methods = self.methods
            if methods is not None and method not in methods:  # the route answers its own 405
                return self.original(scope, receive, send)  # type: ignore[no-any-return]
            route = self.any
            if self.by_method:  # a route serving every method may hand `post` on as POST (Werkzeug
                # upper-cases it; servers pass the token as sent): its policy is POST's
                route = self.by_method.get(method) or self.by_method.get(method.upper(), self.any)
            if route is not None:
                return self.guard.run_http(route, self.original, scope, receive, send)
            if self.deny:
                return self.guard.deny(scope, receive, send)
            return self.original(scope, receive, send)  # type: ignore[no-any-return]
        if scope["type"] == "websocket":
            route = self.any or self.by_method.get("GET")
            if route is not None:
                return self.guard.run_websocket(route, self.original, scope, receive, send)
            if self.deny:
                return self.guard.deny(scope, receive, send)
        return self.original(scope, receive, send)  # type: ignore[no-any-return]


_NO_METHODS: dict[str, CompiledRoute] = {}  # shared by every plan without per-method policies: never mutated


@dataclass(slots=True)
class Plan:
    """What one leaf gets: a policy per method and/or for any method, and whether to deny the rest.
    `by_method` is shared with the route's BoundHandle (neither mutates it once planned)."""

    leaf: Leaf
    by_method: dict[str, CompiledRoute] = field(default_factory=lambda: _NO_METHODS)
    any: CompiledRoute | None = None

    @property
    def empty(self) -> bool:
        return self.any is None and not self.by_method


class Planner:
    """Turns leaves plus the registry into plans; keeps derived CompiledRoutes stable across rebinds."""

    def __init__(self, registry: RouteRegistry) -> None:
        self.registry = registry
        self._derived: dict[tuple[Any, ...], CompiledRoute] = {}

    def plan(self, leaves: Iterable[Leaf]) -> list[Plan]:
        index: dict[str, list[CompiledRoute]] = {}
        for entry in self.registry:
            index.setdefault(path_format(entry.template), []).append(entry)
        bound: dict[int, frozenset[str]] = {}  # id(entry) -> the methods bound so far ("*": any)
        plans: dict[tuple[int, str], Plan] = {}
        for leaf in leaves:
            plan = self._plan_leaf(leaf, index, bound)
            previous = plans.get((id(leaf.route), leaf.slot))
            if previous is None:
                plans[(id(leaf.route), leaf.slot)] = plan
            elif not _same(previous, plan):
                raise ConfigError(
                    f"route {leaf.template!r} is reached through two paths with different policies "
                    f"({previous.leaf.template!r} too): declare the policy on the route or its router"
                )
        self._check_all_bound(bound, leaves)
        return list(plans.values())

    def _plan_leaf(
        self, leaf: Leaf, index: dict[str, list[CompiledRoute]], bound: dict[int, frozenset[str]]
    ) -> Plan:
        plan = Plan(leaf)
        fmt = leaf.path_format
        entries = index.get(fmt, ()) if fmt is not None else ()
        explicit: dict[str, CompiledRoute] = {}
        wildcard: CompiledRoute | None = None
        for entry in entries:
            if leaf.protocol == "websocket":
                if entry.any_method or "GET" in entry.methods:
                    wildcard = wildcard or entry
                    _note(bound, entry, entry.methods | _EVERY)
                continue
            if entry.any_method:
                if wildcard is not None:
                    raise ConfigError(f"route {entry.template!r}: registered twice for every method")
                wildcard = entry
                _note(bound, entry, _EVERY)
                continue
            served = entry.methods
            if leaf.methods is not None and not served <= leaf.methods:
                served = served & leaf.methods
            for method in served:
                if method in explicit and explicit[method] is not entry:
                    raise ConfigError(
                        f"route {entry.template!r}: {method} is registered twice "
                        f"({explicit[method].template!r} too)"
                    )
                explicit[method] = entry
            _note(bound, entry, served)
        if (explicit or wildcard) and leaf.declared is not None:
            name = (wildcard or next(iter(explicit.values()))).name
            raise ConfigError(
                f"route {leaf.template!r} has both @guard(...) and the registry entry {name!r}: keep one"
            )
        if explicit:
            plan.by_method = {
                method: self._derive(entry, leaf.defaults) for method, entry in explicit.items()
            }
        if wildcard is not None:
            plan.any = self._derive(wildcard, leaf.defaults)
        elif leaf.declared is not None or leaf.defaults:
            layers = [*leaf.defaults, *([leaf.declared] if leaf.declared is not None else [])]
            plan.any = self._declared(leaf, layers)
        _collapse(plan)
        return plan

    def _derive(self, entry: CompiledRoute, defaults: tuple[JobConfig, ...]) -> CompiledRoute:
        if not defaults:
            return entry
        key = ("registry", id(entry), *map(id, defaults))
        found = self._derived.get(key)
        if found is None:
            config = layered([*defaults, entry.config], f"route {entry.name!r}")
            found = self._derived[key] = CompiledRoute(
                entry.template, entry.methods, config, entry.name, entry.any_method
            )
        return found

    def _declared(self, leaf: Leaf, layers: list[JobConfig]) -> CompiledRoute:
        template = leaf.template or repr(leaf.route)
        key = ("declared", id(leaf.route), template, *map(id, layers))
        found = self._derived.get(key)
        if found is None:
            config = layered(layers, f"route {template!r}")
            methods = leaf.methods if leaf.methods is not None else ALL_METHODS
            found = self._derived[key] = CompiledRoute(
                template, methods, config, template, leaf.methods is None
            )
        return found

    def _check_all_bound(self, bound: dict[int, frozenset[str]], leaves: Iterable[Leaf]) -> None:
        missing: list[str] = []
        for entry in self.registry:
            got = bound.get(id(entry), _NOTHING)
            if entry.any_method:
                ok = "*" in got
            else:
                ok = entry.methods <= got or (entry.methods - {"HEAD"} or entry.methods) <= got
            if not ok:
                wanted = "every method" if entry.any_method else ",".join(sorted(entry.methods - got))
                label = (
                    f"{entry.name!r} ({entry.template})"
                    if entry.name != entry.template
                    else repr(entry.template)
                )
                missing.append(f"route {label} [{wanted}]")
        if missing:
            known = sorted({leaf.template for leaf in leaves if leaf.template is not None})
            raise ConfigError(
                "registered routes that match no app route (template and method): "
                + "; ".join(missing)
                + f". The app's routes are: {', '.join(known) or '(none)'}"
            )


_EVERY = frozenset({"*"})
_NOTHING: frozenset[str] = frozenset()


def _note(bound: dict[int, frozenset[str]], entry: CompiledRoute, methods: frozenset[str]) -> None:
    """Add `methods` to what `entry` is bound for (the entry's own set, shared, when it is all)."""
    got = bound.get(id(entry))
    bound[id(entry)] = methods if got is None or got is methods else got | methods


def _collapse(plan: Plan) -> None:
    """One policy for every method an HTTP route serves is its `any` policy: the same dispatch (the
    route answers its own 405 for the rest, before any policy is looked up) without a dict per
    route. (A route serving every method keeps its per-method table: `post` is looked up as POST.)"""
    methods = plan.leaf.methods
    by_method = plan.by_method
    if (
        plan.any is not None
        or plan.leaf.protocol != "http"
        or methods is None
        or len(by_method) != len(methods)
    ):
        return
    only = next(iter(by_method.values()))
    if all(by_method.get(method) is only for method in methods):
        plan.by_method, plan.any = _NO_METHODS, only


def _same(a: Plan, b: Plan) -> bool:
    def configs(plan: Plan) -> tuple[Any, ...]:
        return (
            plan.any.config if plan.any else None,
            sorted((m, r.config.model_dump_json()) for m, r in plan.by_method.items()),
        )

    return configs(a) == configs(b)


def apply(plans: list[Plan], guard: Guard, deny: bool) -> None:
    """Patch (or restore) each planned route object's `handle`."""
    for plan in plans:
        route, slot = plan.leaf.route, plan.leaf.slot
        current = route.__dict__.get(slot)
        if plan.empty and not deny:
            if isinstance(current, BoundHandle):
                if slot == "handle":
                    del route.__dict__["handle"]  # back to the class's own method
                else:
                    route.__dict__[slot] = current.original  # a router's default app, as it was
            continue
        if isinstance(current, BoundHandle):
            bound = current
            bound.guard = guard
        else:
            bound = BoundHandle(getattr(route, slot), guard)
        bound.methods = plan.leaf.methods if plan.leaf.protocol == "http" else None
        bound.by_method = plan.by_method  # shared, not copied: one dict per route at most
        bound.any = plan.any
        bound.deny = deny
        route.__dict__[slot] = bound
