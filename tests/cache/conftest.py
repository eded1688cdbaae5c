"""Fixtures of the cache tests: a settable clock, backends (memory, Valkey, cluster), fake principal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cache_helpers import BACKENDS, make_backend
from guardkit import Clock, FakeAuth

import asgi_guard.stack
from asgi_guard.stages import STAGES
from asgi_guard.state import Backend


@pytest.fixture
def fake_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_guard.stack, "STAGES", (FakeAuth, *STAGES))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, clock: Clock, key_prefix: str) -> AsyncIterator[Backend]:
    made = await make_backend(request, request.param, clock, key_prefix)
    yield made
    await made.close()
