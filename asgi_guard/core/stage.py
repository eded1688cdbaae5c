"""The shape every stage follows, after Starlette's own middlewares.

A stage is built once per route that enables it, as `Stage(app, route, runtime)`, and called as an
ASGI app. It finds the request's GuardContext at `scope["asgi_guard"]`. To reject, raise
`Problem(...)` (or send one itself); the telemetry stage and stage 0 turn it into the response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from asgi_guard.config import JobConfig
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.registry import CompiledRoute


class Stage:
    name: ClassVar[str] = "stage"

    def __init__(self, app: ASGIApp, route: CompiledRoute, runtime: GuardRuntime) -> None:
        self.app = app
        self.route = route
        self.runtime = runtime
        self.config = route.config

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        """Whether a route with `config` needs this stage at all (else it costs nothing)."""
        return False

    @classmethod
    def enabled_in(cls, config: JobConfig, runtime: GuardRuntime) -> bool:
        """Whether, with the app's settings, this stage has anything to do (checked once, at build)."""
        return True

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        """Whether this stage reads the request body (the stack then replays it to the app)."""
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
