"""install() / GuardMiddleware: bind each route's prebuilt pipeline to the app's own route objects.

Two parts (DESIGN.md, stage 0):
- the outer middleware (`GuardMiddleware`): lifespan (start-up validation and binding), the metrics
  endpoint, and, for a bare ASGI app without a Starlette router, the registry matcher fallback;
- the route-bound part (`Guard.run_http` / `Guard.run_websocket`), called from a bound route's
  `handle` once the app's router has chosen that route: request id, GuardContext, the route's chain
  of enabled stages, problem+json for a rejection, and the deny answer for undeclared routes.
The router does the matching, 404/405/redirects, `root_path` and mounts exactly as it serves them, so
nothing reaches a guarded handler unguarded and nothing the app does not run is charged.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import json
import logging
import os
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.binding.bind import BoundHandle, Planner, apply
from asgi_guard.binding.routes import Watch, WatchedRoutes, find_router, walk
from asgi_guard.core.context import SCOPE_KEY, GuardContext, declared_length
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.problems import Problem, answer_problem, payload_too_large, send_problem
from asgi_guard.core.proxies import ClientResolver
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.core.settings import GuardSettings
from asgi_guard.core.stage import (
    ChainPlan,
    StageType,
    build_chain,
    declare_chain,
    plan_chain,
    replan,
    route_key,
)
from asgi_guard.registry import CompiledRoute, RouteRegistry
from asgi_guard.stages import stages_for
from asgi_guard.state import Backend

log = logging.getLogger("asgi_guard")

_REQUEST_ID = b"x-request-id"
HANDLE_KEY = "asgi_guard.handle"  # scope key: the route's own handle, innermost in its pipeline
# Generated ids: 16 random hex digits per process, then a counter: unique, 32 characters, and far
# cheaper than a fresh random draw per request (ids identify requests; they are not secrets).
_ID_PREFIX = os.urandom(8).hex().encode()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))
WEBSOCKET_STAGES = frozenset({"security", "rate_limit"})  # what runs before websocket.accept


def _mark_coroutine_function(func: Any) -> Any:
    """Mark a plain function that returns a coroutine as a coroutine function, so servers that ask
    (uvicorn's `interface="auto"`: `asyncio.iscoroutinefunction(app.__call__)`) still see an ASGI 3
    app (what `inspect.markcoroutinefunction` does from Python 3.12; asgiref's shim before it)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # pragma: no cover - Python >= 3.12
        return mark(func)
    func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return func


def _new_id_prefix() -> None:
    """A forked worker (gunicorn --preload) must not repeat its parent's ids."""
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex().encode()


os.register_at_fork(after_in_child=_new_id_prefix)


def _valid_request_id(value: bytes) -> bool:
    """Up to 128 visible ASCII characters."""
    return 0 < len(value) <= 128 and all(0x21 <= b <= 0x7E for b in value)


def _request_id(scope: Scope) -> bytes:
    """The client's X-Request-ID when it is valid, else a new one."""
    for name, value in scope["headers"]:
        if name == _REQUEST_ID:
            if _valid_request_id(value):
                return bytes(value)
            break
    return b"%s%016x" % (_ID_PREFIX, next(_ID_COUNTER))


def route_path(scope: Scope) -> str:
    """The path the app routes on: `path` without the `root_path` prefix (Starlette's get_route_path)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def _has_control(path: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)


def _has_dot_segment(path: str) -> bool:
    """A `.` or `..` segment (RFC 3986 §5.2.4; clients remove them, `%2e%2e` arrives decoded): an app
    that normalises its path would serve another route than the one the matcher saw."""
    return "/." in path and any(part in (".", "..") for part in path.split("/"))


def _bad_target() -> Problem:
    return Problem(
        400, "bad-request-target", "Bad Request", "the request target has control characters or dot segments"
    )


STAGES: tuple[StageType, ...] | None = None  # None: the package's order (tests may substitute)


def _route_handle(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    """Innermost app of every pipeline: the handle of the route the router chose (its coroutine,
    handed on: a coroutine layer of its own would cost every request)."""
    return scope[HANDLE_KEY](scope, receive, send)  # type: ignore[no-any-return]


def build_pipeline(
    app: ASGIApp, route: CompiledRoute, runtime: GuardRuntime, only: frozenset[str] | None = None
) -> tuple[ASGIApp, bool]:
    """The route's chain of enabled stages around `app` (only those named in `only`, if given), and
    whether any stage needs the body."""
    plan, probe = plan_pipeline(route, runtime, only)
    return build_chain(app, route, runtime, (), probe, plan)


def plan_pipeline(
    route: CompiledRoute, runtime: GuardRuntime, only: frozenset[str] | None = None
) -> tuple[ChainPlan, Any]:
    """The route's planned stages (nothing built) and the stage factory its build will use."""
    stages = STAGES or stages_for(route.config, runtime)
    if only is not None:
        stages = tuple(stage for stage in stages if stage.name in only)
    # the probe (None when nothing is traced) wraps stages to time their child spans
    probe = runtime.tracing.stage_probe(route.config.tracing.stage_spans)
    return plan_chain(route, runtime, stages), probe


_BUILD_LOCK = threading.Lock()
_BARE: tuple[ASGIApp, bool] = (_route_handle, False)  # a route without stages (shared by all)
_BARE_BODY: tuple[ASGIApp, bool] = (_route_handle, True)


class _LazyChain:
    """Stands in for a route's chain until its first request, which builds it (once: under a lock,
    for servers running several event loops in threads) and puts it in the pipeline table, so
    later requests find the real chain; a request already holding this stand-in goes through it.

    The start-up check (`Guard._prepare`) has built, eagerly, one route for every distinct way a
    stage can be configured, so a build here repeats a construction that already succeeded (with
    another route's names): a route's config error still surfaces at start-up. The build uses the
    stages planned at start-up (`shape`), not a new plan: a gate that depends on the runtime's state
    (a tracer provider or a log level set later) cannot add a stage that was never checked."""

    __slots__ = ("built", "pair", "probe", "route", "runtime", "shape", "table")

    def __init__(
        self,
        table: dict[CompiledRoute, Any],
        route: CompiledRoute,
        runtime: GuardRuntime,
        probe: Any,
        shape: tuple[tuple[StageType, ...], bool],
        pair: bool,
    ) -> None:
        self.table, self.route, self.runtime, self.probe = table, route, runtime, probe
        self.shape, self.pair = shape, pair  # pair: the table holds (chain, needs body)
        self.built: ASGIApp | None = None

    def build(self) -> ASGIApp:
        built = self.built
        if built is None:
            with _BUILD_LOCK:
                built = self.built
                if built is None:
                    stages, needs_body = self.shape
                    plan = replan(self.route, stages, needs_body)
                    chain, _ = build_chain(_route_handle, self.route, self.runtime, (), self.probe, plan)
                    built = self.built = chain
                    entry = self.table.get(self.route)
                    if entry is self or (type(entry) is tuple and entry[0] is self):
                        self.table[self.route] = (chain, needs_body) if self.pair else chain
        return built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.build()(scope, receive, send)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Building and binding allocate hundreds of thousands of long-lived objects for big apps (10,000
    routes): the cyclic GC would rescan them again and again (most of the start-up time), and none
    of them is garbage. Reference counting still frees everything short-lived."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class Guard:
    """One app's guard: the runtime, the pipelines (one per CompiledRoute) and the route binding."""

    def __init__(self, registry: RouteRegistry, runtime: GuardRuntime, router: Any = None) -> None:
        self.registry = registry
        self.runtime = runtime
        self.settings = settings = runtime.settings
        self.router = router
        self._client_ip = ClientResolver(settings.trusted_proxies, settings.forwarded_header).resolve
        self._deny = settings.unregistered == "deny"
        self._max_body = settings.max_body_size
        self._pipelines: dict[CompiledRoute, tuple[ASGIApp, bool]] = {}
        self._validated: set[Any] = set()  # (stage, route settings, validation key) built once
        self._last: tuple[Any, ...] | None = None  # the last lazily planned config, methods, plan
        self._shapes: dict[Any, tuple[tuple[StageType, ...], bool]] = {}
        self._ws_pipelines: dict[CompiledRoute, ASGIApp] = {}
        self._planner = Planner(registry)
        self._watch: Watch | None = None
        self._following = False  # bind routes-list changes as they happen (`follow_changes`)
        # (registry, its size) when the last binding bound every entry: a strict bind() then finds
        # nothing new unless a route or a policy changed since (see `_bound_as_is`)
        self._complete: tuple[RouteRegistry, int] | None = None
        self.bindings: list[Any] = []  # the last plans (OpenAPI reads them)

    def validate(self) -> None:
        """Check every registry entry's pipeline now: config errors (a JWT route without a key, ...)
        surface before anything is served (see `_prepare`)."""
        with _no_cyclic_gc():
            for route in self.registry:
                self.pipeline(route)

    def policy_routes(self) -> list[CompiledRoute]:
        """The routes whose policies are enforced now, each once: every bound policy (registry
        entries, and policies declared with `@guard` / `guard_router`, merged with their routers'
        defaults) for an app with a router; the registry for a bare ASGI app, or before binding."""
        if self.router is None or not self.bindings:
            return list(self.registry)
        found: dict[int, CompiledRoute] = {}
        for plan in self.bindings:
            for route in (plan.any, *plan.by_method.values()):
                if route is not None:
                    found.setdefault(id(route), route)
        return list(found.values())

    def swap_registry(self, registry: RouteRegistry) -> None:
        """Serve `registry` from now on (asgi_guard.reload). Every pipeline is built and every policy
        planned against the app's routes first; on any error (ConfigError, a route that matches
        nothing) the old registry, pipelines and binding stay and the error is raised. Nothing awaits
        in between, so requests see the old routes or the new ones, never a mix; a request already
        running keeps the pipeline it started with. The runtime (backend, counters) is the same."""
        saved = (self.registry, self._planner, self._pipelines, self._ws_pipelines)
        self.registry, self._planner = registry, Planner(registry)
        self._pipelines, self._ws_pipelines = {}, {}
        try:
            self.validate()
            self.bind()  # plans and builds before it patches a route: an error changes nothing
        except BaseException:
            self.registry, self._planner, self._pipelines, self._ws_pipelines = saved
            raise
        registry.freeze()

    # -- binding --------------------------------------------------------------------------------
    def bind(self, *, check: bool = True) -> None:
        """Bind every policy to the router's current routes (ConfigError if one cannot be bound).

        With `check=False` (at install(), when routes may still be added), registry entries that match
        no route yet are not an error; they are at start-up.
        """
        if self.router is None:
            return
        if check and self._bound_as_is():
            return
        with _no_cyclic_gc():
            self._bind(check)

    def _bound_as_is(self) -> bool:
        """Whether the binding in place is the one a strict bind would make now (issue 16: the
        start-up bind then costs a few reads per route instead of a second walk and plan): the last
        binding left no registry entry unbound, the registry has no entry since, no routes list,
        mounted app or router default changed (the route watch), and no `guard_router`/`@guard`
        policy was declared, replaced or removed since (each leaf's and router's declaration is
        compared by identity)."""
        complete, watch = self._complete, self._watch
        if complete is None or watch is None:
            return False
        registry, size = complete
        if registry is not self.registry or size != len(registry) or watch.changed():
            return False
        return not watch.redeclared(plan.leaf for plan in self.bindings)

    def _bind(self, check: bool) -> None:
        assert self.router is not None
        leaves, watch = walk(self.router)
        planner = self._planner
        if not check:
            planner = _Lenient(self.registry, planner)
        plans = planner.plan(leaves)
        self._check_not_shadowed(plans)
        complete = not isinstance(planner, _Lenient) or planner.complete
        for plan in plans:  # build first: a ConfigError leaves the previous binding in place
            protocol = plan.leaf.protocol
            for route in (plan.any, *plan.by_method.values()):
                if route is not None:
                    if protocol != "websocket":
                        self.pipeline(route)
                    if protocol in ("websocket", "mount"):
                        self.ws_pipeline(route)
        apply(plans, self, self._deny)
        self.bindings = plans
        self._watch = watch
        self._complete = (self.registry, len(self.registry)) if complete else None
        if self._following:
            self._listen(watch)

    def _check_not_shadowed(self, plans: list[Any]) -> None:
        """The guard's own endpoints are answered before the app's router: an app route at
        `metrics_path` or `health_path`, or below `console_path`, would never be reached (and look
        guarded). A ConfigError up to start-up; for a route added while serving, an error log
        (raising would fail every request from then on) and the route stays unreachable."""
        settings = self.runtime.settings
        own = {path for path in (settings.metrics_path, settings.health_path) if path}
        console = settings.console_path.rstrip("/") + "/" if settings.console_path else None
        if not own and console is None:
            return
        for plan in plans:
            template = plan.leaf.template
            if template is None or "{" in template:
                continue
            if template in own or (console is not None and (template + "/").startswith(console)):
                message = (
                    f"route {template!r} is shadowed by the guard's own endpoint there (metrics_path, "
                    "health_path or console_path): move the route or the setting"
                )
                if not self._following:
                    raise ConfigError(message)
                log.error("asgi-guard: %s", message)

    def follow_changes(self) -> None:
        """While serving: bind a routes list's change the moment it is made (`WatchedRoutes.listener`),
        not only at the next request's check. Not before: an app adding its routes after install()
        at import time would rebind once per route."""
        self._following = True
        if self._watch is not None:
            self._listen(self._watch)

    def _listen(self, watch: Watch) -> None:
        for entry in watch.entries:
            routes = entry[1]
            if isinstance(routes, WatchedRoutes):
                routes.listener = self.bind

    def rebind_if_changed(self) -> None:
        """Routes added after binding (include_router, add_route) are bound before they are served."""
        watch = self._watch
        if watch is None or watch.changed():
            self.bind()

    def pipeline(self, route: CompiledRoute) -> tuple[ASGIApp, bool]:
        """The route's (chain, needs body): the chain itself, or a stand-in built on first use."""
        built = self._pipelines.get(route)
        if built is None:
            built = self._pipelines[route] = self._prepare(self._pipelines, route, None)
        return built

    def ws_pipeline(self, route: CompiledRoute) -> ASGIApp:
        built = self._ws_pipelines.get(route)
        if built is None:
            built = self._ws_pipelines[route] = self._prepare(self._ws_pipelines, route, WEBSOCKET_STAGES)[0]
        return built

    def _prepare(
        self, table: dict[CompiledRoute, Any], route: CompiledRoute, only: frozenset[str] | None
    ) -> tuple[ASGIApp, bool]:
        """Build the route's chain now if one of its stages comes with a (validation key, route
        settings) pair no route has brought before; else a `_LazyChain` (after the stages' per-route
        `declare`). So each distinct stage configuration is constructed, and can fail, at start-up,
        while 10,000 routes sharing a few policies build a few chains (issue 16: start-up time and
        memory); the others are built on their first request."""
        runtime = self.runtime
        last = self._last  # routes sharing one JobConfig object (and methods) plan alike
        if last is not None and last[0] is route.config and last[1] is route.methods and last[2] == only:
            plan, probe, fresh = last[3], last[4], []
        else:
            plan, probe = plan_pipeline(route, runtime, only)
            if not plan.enabled:
                return _BARE_BODY if plan.needs_body else _BARE
            settings = route_key(route)
            seen = self._validated
            fresh = [
                key
                for stage, section in plan.enabled
                if (key := (stage, settings, stage.validation_key(section))) not in seen
            ]
            self._last = None if fresh else (route.config, route.methods, only, plan, probe)
        if fresh:
            built = build_chain(_route_handle, route, runtime, (), probe, plan)
            seen.update(fresh)  # only once built: a failed key fails again next time (reload)
            return built
        declare_chain(route, runtime, plan)
        shape = (tuple(stage for stage, _ in plan.enabled), plan.needs_body)
        shape = self._shapes.setdefault(shape, shape)  # one tuple per distinct stage list
        return _LazyChain(table, route, runtime, probe, shape, only is None), plan.needs_body

    async def startup(self) -> None:
        self.registry.freeze()
        if self.router is None:  # a bare ASGI app: every request goes through the registry matcher
            self.registry.compile_matcher()
        await self.runtime.startup()

    # -- per request ----------------------------------------------------------------------------
    def _context(
        self, route: CompiledRoute, scope: Scope, receive: Receive, request_id: bytes
    ) -> GuardContext:
        config = route.config
        ctx = GuardContext(
            request_id.decode(),
            route,
            scope.get("path_params") or {},
            scope.get("method", "GET"),
            scope["path"],
            self._client_ip(scope),
            self.runtime,
            receive,
            self._max_body if config.max_body_size is None else config.max_body_size,
        )
        scope[SCOPE_KEY] = ctx
        state = scope.get("state")
        if state is None:
            scope["state"] = {"guard": ctx}
        else:
            state["guard"] = ctx
        return ctx

    async def run_http(
        self, route: CompiledRoute, handle: Any, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run `route`'s pipeline with the route's own `handle` innermost."""
        built = self._pipelines.get(route)
        pipeline, needs_body = built if built is not None else self.pipeline(route)
        request_id = _request_id(scope)
        config = route.config
        ctx = GuardContext(  # inlined (not self._context): this is the per-request hot path
            request_id,
            route,
            scope.get("path_params") or {},
            scope["method"],
            scope["path"],
            self._client_ip(scope),
            self.runtime,
            receive,
            self._max_body if config.max_body_size is None else config.max_body_size,
        )
        scope[SCOPE_KEY] = ctx
        scope[HANDLE_KEY] = handle
        state = scope.get("state")
        if state is None:
            scope["state"] = {"guard": ctx}
        else:
            state["guard"] = ctx

        def send_with_headers(message: Message) -> Awaitable[None]:
            # a plain function handing on the server's coroutine: no coroutine of its own per message
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                headers = message.get("headers")
                if type(headers) is not list:  # the usual case (Starlette) appends in place
                    headers = message["headers"] = list(headers or ())
                headers.append((_REQUEST_ID, request_id))
                if ctx.response_headers:
                    headers.extend(ctx.response_headers)
            return send(message)

        try:
            if needs_body and declared_length(scope) > ctx.max_body_size:
                # Said up front: refuse before anything reads it. (Found only while the app reads
                # it, the 413 would be raised inside the app's body parsing, which FastAPI turns
                # into its own 400.)
                raise payload_too_large(ctx.max_body_size)
            if config.resource_id_from_body:
                await ctx.resolve_resource_id()
            await pipeline(scope, ctx.receive if needs_body else receive, send_with_headers)
        except Problem as problem:
            if ctx.status is not None:
                raise
            await answer_problem(ctx, send_with_headers, problem)
        except Exception:
            # The app's own 500 is sent by ServerErrorMiddleware, outside every user middleware, so it
            # would lack the request id: answer it here (unless the app shows its debug page or has
            # its own 500 handler), then re-raise so the server logs the error as usual.
            if ctx.status is None and not _app_handles_500(scope):
                failed = Problem(500, "internal-error", "Internal Server Error", "the handler failed")
                await send_problem(send_with_headers, failed, ctx.request_id)
            raise
        finally:
            ctx.finish()

    async def run_websocket(
        self, route: CompiledRoute, handle: Any, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Security and rate limit before `websocket.accept`; a refusal never reaches the app."""
        built = self._ws_pipelines.get(route)
        pipeline = built if built is not None else self.ws_pipeline(route)
        request_id = _request_id(scope)
        ctx = self._context(route, scope, receive, request_id)
        scope[HANDLE_KEY] = handle
        token = self._websocket_token(scope)
        if token is not None:
            scope["headers"] = [*scope["headers"], (b"authorization", b"Bearer " + token)]
        metrics = self.runtime.metrics
        try:
            await pipeline(scope, receive, send)
        except Problem as problem:
            if ctx.status is not None:
                raise
            stage = ctx.rejected_by or problem.stage or "stack"
            said = ctx.decisions.get(stage)
            reason = said.reason if said is not None else None
            metrics.rejections.labels(route.label, stage, reason or problem.slug).inc()
            metrics.requests.labels(route.label, "WEBSOCKET", str(problem.status)).inc()
            await refuse_websocket(scope, send, problem, ctx.request_id)
        finally:
            ctx.finish()

    def _websocket_token(self, scope: Scope) -> bytes | None:
        """A bearer token from `Sec-WebSocket-Protocol: bearer.<jwt>` or `?access_token=` when the
        settings allow it and no Authorization header was sent (browsers cannot set one)."""
        sources = self.settings.websocket_token
        if sources == ["header"]:
            return None
        for name, _ in scope["headers"]:
            if name == b"authorization":
                return None
        if "subprotocol" in sources:
            for proto in scope.get("subprotocols") or ():
                if isinstance(proto, str) and proto.startswith("bearer."):
                    return proto[7:].encode("latin-1", "replace")  # not token68: a 401 later
        if "query" in sources:
            query: bytes = scope.get("query_string", b"")
            for key, value in parse_qsl(query.decode("latin-1")):
                if key == "access_token":  # percent-decoded as UTF-8: not token68 is a 401 later
                    return value.encode("latin-1", "replace")
        return None

    async def deny(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`unregistered = "deny"`: the route exists but no policy was declared for it."""
        status = self.settings.unregistered_status
        title = "Not Found" if status == 404 else "Forbidden"
        problem = Problem(status, "route-not-registered", title, "no policy is declared for this route")
        request_id = _request_id(scope)
        if scope["type"] == "websocket":
            await refuse_websocket(scope, send, problem, request_id.decode())
            return
        problem.headers.append((_REQUEST_ID, request_id))
        await send_problem(send, problem, request_id.decode())


class _Lenient(Planner):
    """At install(): bind what exists; unmatched registry entries wait for start-up."""

    def __init__(self, registry: RouteRegistry, strict: Planner) -> None:
        super().__init__(registry)
        self._derived = strict._derived
        self.complete = True  # every entry bound: the strict check would pass as well

    def _check_all_bound(self, bound: Any, leaves: Any) -> None:
        try:
            super()._check_all_bound(bound, leaves)
        except ConfigError:
            self.complete = False


def _inside_middleware_stack(app: Any) -> bool:
    """Whether `app` is the rest of a Starlette middleware stack (it reaches ExceptionMiddleware)."""
    from starlette.middleware.exceptions import ExceptionMiddleware

    seen: set[int] = set()
    while app is not None and id(app) not in seen:
        seen.add(id(app))
        if isinstance(app, ExceptionMiddleware):
            return True
        app = getattr(app, "app", None)
    return False


def _app_handles_500(scope: Scope) -> bool:
    app = scope.get("app")
    if app is None:
        return False
    if getattr(app, "debug", False):
        return True
    handlers = getattr(app, "exception_handlers", {})
    return 500 in handlers or Exception in handlers


async def refuse_websocket(scope: Scope, send: Send, problem: Problem, request_id: str) -> None:
    """Refuse the handshake: the problem as an HTTP response (WebSocket Denial Response extension)
    when the server supports it, else close code 1008 (policy violation) before accept."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = json.dumps(problem.body(request_id), separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (_REQUEST_ID, request_id.encode()),
            *problem.headers,
        ]
        await send({"type": "websocket.http.response.start", "status": problem.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": problem.slug})


class GuardMiddleware:
    """The whole asgi-guard stack as one ASGI middleware entry (the outer part; see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        registry: RouteRegistry,
        settings: GuardSettings | None = None,
        *,
        backend: Backend | None = None,
        runtime: GuardRuntime | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.app = app
        self.registry = registry
        self._error: ConfigError | None = None
        if guard is None:
            guard = Guard(registry, runtime or GuardRuntime(settings, backend), find_router(app))
            try:
                guard.validate()
                guard.bind(check=False)
            except ConfigError as exc:
                if not _inside_middleware_stack(app):
                    raise
                # Built by Starlette's build_middleware_stack on the first (lifespan) call: raising
                # here would be swallowed by uvicorn's lifespan=auto; report it as a failed start.
                self._error = exc
        elif guard.router is None:
            guard.router = find_router(app)
        self.guard = guard
        self.runtime = guard.runtime
        self.settings = self.runtime.settings
        self._fallback = guard.router is None  # a bare ASGI app: match the registry on the path
        self._deny = self.settings.unregistered == "deny"
        self._checked = False
        self._frozen = False  # gc.freeze() ran at start-up (undone at shutdown)
        self._own: dict[str, ASGIApp] = {}  # path -> the guard's own endpoint (metrics, health)
        if self.settings.health_path:
            from asgi_guard.core.health import health_endpoint

            self._own[self.settings.health_path] = health_endpoint(self.runtime)
        if self.settings.metrics_path:  # after health: metrics wins a shared path, as it always did
            from asgi_guard.core.metrics import metrics_endpoint

            self._own[self.settings.metrics_path] = metrics_endpoint(self.runtime)
        self._console: tuple[str, ASGIApp] | None = None
        try:
            self._console = _console(self.settings, self.runtime, guard.policy_routes)
        except ConfigError as exc:  # a console setting (token too short, ...): as any config error
            if not _inside_middleware_stack(app):
                raise
            self._error = self._error or exc
        self._endpoints = bool(self._own) or self._console is not None

    def swap_registry(self, registry: RouteRegistry) -> None:
        """Serve `registry` from now on (asgi_guard.reload; see `Guard.swap_registry`)."""
        self.guard.swap_registry(registry)
        self.registry = registry

    @_mark_coroutine_function
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """An HTTP request to a bound app goes on to the app as it is (its coroutine handed on: no
        coroutine layer of this middleware's own); everything else through `_dispatch`."""
        if scope["type"] != "http" or not self._checked or self._fallback:
            return self._dispatch(scope, receive, send)
        watch = self.guard._watch
        if watch is None or watch.changed():  # routes added while serving: bind them first
            self.guard.bind()
        if self._endpoints:  # the guard's own endpoints sit where the app's routes do
            path = route_path(scope) if scope.get("root_path") else scope["path"]
            own = self._own.get(path)
            if own is not None:
                return own(scope, receive, send)
            console = self._console
            if console is not None and (path + "/").startswith(console[0] + "/"):
                return self._dispatch(scope, receive, send)
        return self.app(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        guard = self.guard
        if not self._checked:
            await self._first_call()
        elif not self._fallback:
            watch = guard._watch
            if watch is None or watch.changed():  # routes added while serving: bind them first
                guard.bind()
        if kind == "http":
            # the guard's own endpoints sit where the app's routes do: below the root_path
            path = route_path(scope) if scope.get("root_path") else scope["path"]
            own = self._own.get(path)  # metrics, health
            if own is not None:
                await own(scope, receive, send)
                return
            if self._console is not None and (path + "/").startswith(self._console[0] + "/"):
                root = scope.get("root_path", "") + self._console[0]
                await self._console[1](
                    {**scope, "root_path": root, "path": root + path[len(self._console[0]) :]},
                    receive,
                    send,
                )
                return
            if self._fallback:
                await self._fallback_http(scope, receive, send)
                return
        elif kind == "websocket" and self._fallback:
            path = route_path(scope)
            if _has_control(path) or _has_dot_segment(path):
                await refuse_websocket(scope, send, _bad_target(), _request_id(scope).decode())
                return
            found = self.registry.match("GET", path)
            if found is not None:
                scope["path_params"] = found[1]
                await guard.run_websocket(found[0], self.app, scope, receive, send)
                return
            if self._deny:
                await guard.deny(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _first_call(self) -> None:
        """Without a lifespan (httpx ASGITransport, `--lifespan off`): start and bind on first use."""
        if self._error is not None:
            raise self._error
        if not self.runtime.started:
            await self.guard.startup()
        if not self._fallback:
            self.guard.bind()
            self.guard.follow_changes()
        self._checked = True

    async def _fallback_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No Starlette router to bind to: the registry matcher on the path the app routes on."""
        path = route_path(scope)
        if _has_control(path) or _has_dot_segment(path):
            await send_problem(send, _bad_target(), None)
            return
        # the app may treat `post` as POST (Werkzeug, Django upper-case it): match it as POST
        found = self.registry.match(scope["method"].upper(), path)
        if found is None:
            if self._deny:
                await self.guard.deny(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        route, params = found
        scope["path_params"] = params
        await self.guard.run_http(route, self.app, scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start the runtime before the app's own start-up; bind once the app's start-up is done, so
        routes it adds are bound too. Any failure is reported as `lifespan.startup.failed`, which
        makes the server exit instead of serving (uvicorn's lifespan=auto would otherwise go on)."""
        guard = self.guard
        failed = False

        async def failure(exc: BaseException) -> None:
            nonlocal failed
            failed = True
            log.error("asgi-guard start-up failed: %s", exc)
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            await send({"type": "lifespan.startup.failed", "message": text})

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._error is not None:
                        raise self._error
                    await guard.startup()
                except Exception as exc:
                    await failure(exc)
                    raise
            elif message["type"] == "lifespan.shutdown":
                if self._frozen:
                    gc.unfreeze()
                    self._frozen = False
                await self.runtime.shutdown()
            return message

        async def lifespan_send(message: Message) -> None:
            if failed:
                return
            if message["type"] == "lifespan.startup.complete" and not self._fallback:
                try:
                    guard.bind()
                except ConfigError as exc:
                    await failure(exc)
                    raise  # the app's lifespan ends too (ASGI: after startup.failed the app exits)
                guard.follow_changes()
                self._checked = True
            if message["type"] == "lifespan.startup.complete" and self.settings.gc_freeze:
                gc.freeze()  # the app is built: what is alive now lives as long as the process
                self._frozen = True
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)


def _console(
    settings: GuardSettings, runtime: GuardRuntime, routes: Callable[[], Iterable[CompiledRoute]]
) -> tuple[str, ASGIApp] | None:
    """(mount path, app) of the operator console when `console_path` is set (asgi_guard.console)."""
    if not settings.console_path:
        return None
    from asgi_guard.console import console_app

    token = settings.console_token.get_secret_value() if settings.console_token else None
    path = settings.console_path.rstrip("/")
    return path, console_app(runtime, routes, token=token, allow=settings.console_allow)


def install(
    app: Any,
    registry: RouteRegistry | None = None,
    settings: GuardSettings | None = None,
    *,
    backend: Backend | None = None,
    runtime: GuardRuntime | None = None,
    problem_details: bool = False,
) -> Guard:
    """Bind asgi-guard to a Starlette or FastAPI app (one outer middleware entry, plus the routes).

    Validates now: an invalid config raises ConfigError at import time; a registry entry that matches
    no app route raises at start-up (after routes declared later in the module, or added by the app's
    lifespan, exist), and the server then exits instead of serving. Pass your own `runtime` to reach
    its backend and hooks from the app (e.g. to grant credits at start-up); otherwise one is built
    from `settings`. Returns the Guard (its `bind()` re-checks the binding on demand).
    `problem_details=True` also answers the app's own errors (HTTPException, 404/405, FastAPI's
    validation errors, unhandled exceptions) as RFC 9457 problem+json, like the guard's rejections
    (see `asgi_guard.problem_handlers`).
    """
    if not isinstance(registry, (RouteRegistry, type(None))):  # install(app, settings) is an easy slip
        raise TypeError(
            f"install(app, registry, settings): registry must be a RouteRegistry or None, not "
            f"{type(registry).__name__} (settings go third or by name: install(app, settings=...))"
        )
    if settings is not None and not isinstance(settings, GuardSettings):
        raise TypeError(f"install(): settings must be GuardSettings, not {type(settings).__name__}")
    if problem_details:
        from asgi_guard.problem_handlers import add_problem_handlers

        add_problem_handlers(app)
    registry = registry if registry is not None else RouteRegistry()
    guard = Guard(registry, runtime or GuardRuntime(settings, backend), find_router(app))
    guard.validate()
    _console(guard.runtime.settings, guard.runtime, guard.policy_routes)  # settings fail here, not later
    guard.bind(check=False)
    app.add_middleware(GuardMiddleware, registry=registry, guard=guard)
    if hasattr(app, "openapi") and hasattr(app, "openapi_schema"):
        from asgi_guard.binding.openapi import document

        document(app, guard)
    return guard


__all__ = ["BoundHandle", "Guard", "GuardMiddleware", "install"]
