"""Shared test helpers: a settable clock, a guarded Starlette app, an ASGI client, a fake principal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.core.context import Principal
from asgi_guard.core.stage import Stage
from asgi_guard.state import Backend

UNCROSSED_WINDOW = 10**9
"""A fixed window (seconds) no test run crosses: windows align to multiples of their length since
the epoch, so a 60 s window ends every minute and a test counting "1 allowed, then 429" on the real
clock fails whenever a minute turns mid-test (it did, in CI). The next multiple of 10**9 s is in 2033."""


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
    # metrics are opt-in (off by default); these tests read the counters, so they collect them
    default = GuardSettings(metrics_collect=True, _env_file=None)  # type: ignore[call-arg]
    install(app, registry, settings or default, backend=backend)
    return app


def client(app: Any) -> httpx.AsyncClient:
    """A client that sees a 500 for a raising handler (as a real server would answer)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class FakeAuth(Stage):
    """Stands in for the security stage: `X-User: name` becomes the principal."""

    name = "fake_auth"

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        for key, value in scope["headers"]:
            if key == b"x-user":
                scope["asgi_guard"].principal = Principal(value.decode())
        await self.app(scope, receive, send)


def http_scope(
    method: str,
    path: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    query: bytes = b"",
    client: tuple[str, int] | None = ("127.0.0.1", 4000),
    server: tuple[str, int] | None = ("api", 80),
) -> dict[str, Any]:
    """A raw ASGI HTTP scope, for driving an app where a client library would not go (garbage
    headers, silent or slow receives): `Host: api`, then `headers` as given."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"api"), *headers],
        "client": client,
        "server": server,
    }


async def drive(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[list[dict[str, Any]], Exception | None]:
    """One request with `body` in one message, then a disconnect: what the app sent, and what it
    raised (None when it returned)."""
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception as exc:
        return sent, exc
    return sent, None
