"""Shared fixtures: real valkey-server processes (standalone and 3-node cluster) on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from asgi_guard_dev.valkey import ValkeyDeployment, start_cluster, start_standalone


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ValkeyDeployment]:
    """One real standalone valkey-server for the whole session."""
    deployment = start_standalone()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def valkey_url(valkey_server: ValkeyDeployment) -> str:
    return valkey_server.url


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ValkeyDeployment]:
    """A real 3-primary valkey cluster for the whole session."""
    deployment = start_cluster()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def valkey_cluster_url(valkey_cluster: ValkeyDeployment) -> str:
    return valkey_cluster.url


@pytest.fixture
def own_valkey() -> Iterator[ValkeyDeployment]:
    """A private standalone server a test may stop and restart (`.nodes[0].stop()/start()`)."""
    deployment = start_standalone()
    yield deployment
    deployment.stop()


@pytest.fixture
def key_prefix() -> str:
    """A unique key prefix so tests sharing one server never see each other's state."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def make_client() -> AsyncIterator[object]:
    """`make_client(app)` -> httpx.AsyncClient talking to the ASGI app in-process."""
    clients: list[httpx.AsyncClient] = []

    def factory(app: object, **kwargs: object) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=kwargs.pop("client_addr", ("127.0.0.1", 50000)))  # type: ignore[arg-type]
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
