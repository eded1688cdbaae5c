"""Helpers for the cache and idempotency tests: a settable clock, a fake principal stage, backends."""

from __future__ import annotations

from typing import Any

import pytest
from guardkit import Clock
from starlette.applications import Starlette

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import PoolingConfig
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend

BACKENDS = ["memory", "valkey", "cluster"]


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
    # metrics are opt-in (off by default); these tests read the counters, so they collect them
    settings = GuardSettings(key_prefix=key_prefix, metrics_collect=True, _env_file=None)  # type: ignore[call-arg]
    return GuardMiddleware(Starlette(routes=routes), registry=registry, settings=settings, backend=backend)
