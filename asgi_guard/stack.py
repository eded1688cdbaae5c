"""install() / GuardMiddleware: resolve the route once, then run that route's prebuilt pipeline.

Stage 0 lives here: registry lookup, the request id, the GuardContext, body replay, and turning a
raised Problem into an RFC 9457 response. Each registered route gets its own chain of only the stages
it enables, built once; unregistered routes go straight to the app.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.problems import Problem, answer_problem, send_problem
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.core.settings import GuardSettings
from asgi_guard.core.stage import StageType, build_chain
from asgi_guard.registry import CompiledRoute, RouteRegistry
from asgi_guard.stages import load_stages
from asgi_guard.stages.security.ip import parse_networks, resolve_client_ip
from asgi_guard.state import Backend

_REQUEST_ID = b"x-request-id"
# Generated ids: 16 random hex digits per process, then a counter: unique, 32 characters, and far
# cheaper than a fresh random draw per request (ids identify requests; they are not secrets).
_ID_PREFIX = os.urandom(8).hex().encode()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


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


STAGES: tuple[StageType, ...] | None = None  # None: the package's order (tests may substitute)


def build_pipeline(app: ASGIApp, route: CompiledRoute, runtime: GuardRuntime) -> tuple[ASGIApp, bool]:
    """The route's chain of enabled stages around `app`, and whether any stage needs the body."""
    # the probe (None when nothing is traced) wraps stages to time their child spans
    return build_chain(app, route, runtime, STAGES or load_stages(), runtime.tracing.stage_probe())


class GuardMiddleware:
    """The whole asgi-guard stack as one ASGI middleware."""

    def __init__(
        self,
        app: ASGIApp,
        registry: RouteRegistry,
        settings: GuardSettings | None = None,
        *,
        backend: Backend | None = None,
        runtime: GuardRuntime | None = None,
    ) -> None:
        self.app = app
        self.registry = registry
        self.runtime = runtime or GuardRuntime(settings, backend)
        self.settings = self.runtime.settings
        self._trusted = parse_networks(self.settings.trusted_proxies)
        self._forwarded_header = self.settings.forwarded_header
        self._pipelines: dict[CompiledRoute, tuple[ASGIApp, bool]] = {}
        self._deny = self.settings.unregistered == "deny"
        self._max_body = self.settings.max_body_size
        self._metrics_path = self.settings.metrics_path or None
        self._metrics_app: ASGIApp | None = None
        for route in registry:
            self._pipeline(route)
        if self._metrics_path:
            from asgi_guard.core.metrics import metrics_endpoint

            self._metrics_app = metrics_endpoint(self.runtime)

    def _pipeline(self, route: CompiledRoute) -> tuple[ASGIApp, bool]:
        built = self._pipelines.get(route)
        if built is None:
            built = self._pipelines[route] = build_pipeline(self.app, route, self.runtime)
        return built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self.app(scope, self._lifespan_receive(receive, send), send)
            else:
                await self.app(scope, receive, send)
            return
        runtime = self.runtime
        if not runtime.started:
            self.registry.freeze()
            await runtime.startup()
        path: str = scope["path"]
        if path == self._metrics_path and self._metrics_app is not None:
            await self._metrics_app(scope, receive, send)
            return
        found = self.registry.match(scope["method"], path)
        if found is None:
            if self._deny:
                await self._deny_unregistered(scope, send)
            else:
                await self.app(scope, receive, send)
            return
        route, params = found
        pipeline, needs_body = self._pipelines.get(route) or self._pipeline(route)

        request_id = _request_id(scope)
        client = scope.get("client")
        client_ip = (
            resolve_client_ip(scope, self._trusted, self._forwarded_header)
            if self._trusted
            else (client[0] if client else "unknown")
        )
        config = route.config
        ctx = GuardContext(
            request_id.decode(),
            route,
            params,
            scope["method"],
            path,
            client_ip,
            runtime,
            receive,
            self._max_body if config.max_body_size is None else config.max_body_size,
        )
        scope[SCOPE_KEY] = ctx
        state = scope.get("state")
        if state is None:
            scope["state"] = {"guard": ctx}
        else:
            state["guard"] = ctx

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                headers = message.get("headers")
                if type(headers) is not list:  # the usual case (Starlette) appends in place
                    headers = message["headers"] = list(headers or ())
                headers.append((_REQUEST_ID, request_id))
                if ctx.response_headers:
                    headers.extend(ctx.response_headers)
            await send(message)

        try:
            if config.resource_id_from_body:
                await ctx.resolve_resource_id()
            await pipeline(scope, ctx.receive if needs_body else receive, send_with_headers)
        except Problem as problem:
            if ctx.status is not None:
                raise
            await answer_problem(ctx, send_with_headers, problem)

    async def _deny_unregistered(self, scope: Scope, send: Send) -> None:
        status = self.settings.unregistered_status
        problem = Problem(
            status,
            "route-not-registered",
            "Not Found" if status == 404 else "Forbidden",
            f"{scope['method']} {scope['path']} is not a registered route",
        )
        request_id = _request_id(scope)
        problem.headers.append((_REQUEST_ID, request_id))
        await send_problem(send, problem, request_id.decode())

    def _lifespan_receive(self, receive: Receive, send: Send) -> Callable[[], Any]:
        runtime, registry = self.runtime, self.registry

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                registry.freeze()
                try:
                    await runtime.startup()
                except Exception as exc:
                    # Say so, or a server in lifespan "auto" mode takes the error for "no lifespan
                    # support" and serves anyway (issue 13: a refused start must stop the worker).
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    raise
            elif message["type"] == "lifespan.shutdown":
                await runtime.shutdown()
            return message

        return lifespan_receive


def install(
    app: Any,
    registry: RouteRegistry,
    settings: GuardSettings | None = None,
    *,
    backend: Backend | None = None,
    runtime: GuardRuntime | None = None,
) -> None:
    """Add the ordered asgi-guard stack to a Starlette or FastAPI app (one middleware entry).

    Pass your own `runtime` to reach its backend and hooks from the app (e.g. to grant credits at
    start-up); otherwise one is built from `settings`.
    """
    app.add_middleware(
        GuardMiddleware, registry=registry, settings=settings, backend=backend, runtime=runtime
    )
