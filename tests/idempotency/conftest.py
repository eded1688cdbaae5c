"""Fixtures of the idempotency tests: backends (memory, Valkey, cluster) and a fake principal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from guardkit import FakeAuth

import asgi_guard.stack
from asgi_guard.config import PoolingConfig
from asgi_guard.stages import STAGES
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend


@pytest.fixture
def fake_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_guard.stack, "STAGES", (FakeAuth, *STAGES))


@pytest.fixture(params=["memory", "valkey", "cluster"])
async def backend(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        made: Backend = MemoryBackend()
    else:
        url = request.getfixturevalue("valkey_url" if request.param == "valkey" else "valkey_cluster_url")
        made = ValkeyBackend(url, PoolingConfig(socket_timeout=3.0, connect_timeout=3.0), key_prefix)
    yield made
    await made.close()
