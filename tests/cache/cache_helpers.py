"""Helpers for the cache and idempotency tests: a settable clock, a fake principal stage, backends."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.backends import Backend, MemoryBackend, ValkeyBackend
from asgi_guard.config import PoolingConfig
from asgi_guard.context import Principal
from asgi_guard.middleware import Stage

BACKENDS = ["memory", "valkey", "cluster"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


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


async def make_backend(request: pytest.FixtureRequest, kind: str, clock: Clock, key_prefix: str) -> Backend:
    if kind == "memory":
        return MemoryBackend(clock=clock)
    url = request.getfixturevalue("valkey_url" if kind == "valkey" else "valkey_cluster_url")
    # generous bounds: the test machine is shared and busy; fault tests set their own tight ones
    return ValkeyBackend(url, PoolingConfig(socket_timeout=3.0, connect_timeout=3.0), key_prefix)


def guard(
    backend: Backend, routes: list[Any], configs: dict[str, JobConfig], key_prefix: str = "ag"
) -> GuardMiddleware:
    """A Starlette app with `routes`, guarded with `configs` (path template -> JobConfig)."""
    registry = RouteRegistry()
    for path, config in configs.items():
        registry.register(path, config)
    settings = GuardSettings(key_prefix=key_prefix, _env_file=None)  # type: ignore[call-arg]
    return GuardMiddleware(Starlette(routes=routes), registry=registry, settings=settings, backend=backend)
