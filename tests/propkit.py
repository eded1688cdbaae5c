"""Shared by the reference-equivalence property tests: one fake clock drives the reference, the memory
form and the Lua form (ValkeyBackend(clock=...) hands it to every script), on a real standalone
server and on the real 3-node cluster. No tolerance, no sleeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings

from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.state import ValkeyBackend

T = TypeVar("T")
T0 = 1_750_000_000.0
# hypothesis reuses the module-scoped backend across examples; each example uses fresh keys
SCRIPTED = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LOCAL = settings(max_examples=150, deadline=None)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Scripted:
    """A real Valkey (standalone or cluster) whose scripts read `clock` instead of TIME."""

    loop: asyncio.AbstractEventLoop
    backend: ValkeyBackend
    clock: Clock

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["valkey_url", "valkey_cluster_url"], ids=["standalone", "cluster"])
def scripted(request: pytest.FixtureRequest) -> Iterator[Scripted]:
    url = request.getfixturevalue(request.param)
    loop = asyncio.new_event_loop()
    clock = Clock()
    pooling = PoolingConfig(socket_timeout=5.0, connect_timeout=5.0)
    backend = ValkeyBackend(url, pooling, "p" + uuid.uuid4().hex[:8], clock=clock, gc_slack=3600.0)
    yield Scripted(loop, backend, clock)
    loop.run_until_complete(backend.close())
    loop.close()


def fresh() -> str:
    return uuid.uuid4().hex[:12]
