"""Building small guarded apps for the credits and circuit-breaker tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.backends import Backend


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def guarded_app(
    handler: Callable[..., Any],
    config: JobConfig,
    *,
    path: str = "/job",
    methods: Sequence[str] = ("GET", "POST"),
    settings: GuardSettings | None = None,
    backend: Backend | None = None,
) -> Starlette:
    registry = RouteRegistry()
    registry.register(path, config, methods=list(methods))
    app = Starlette(routes=[Route(path, handler, methods=list(methods))])
    install(app, registry, settings or GuardSettings(_env_file=None), backend=backend)  # type: ignore[call-arg]
    return app


def client(app: Any) -> httpx.AsyncClient:
    """A client that sees a 500 for a raising handler (as a real server would answer)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
