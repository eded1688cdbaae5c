"""Invalidation: the Python API and the admin endpoint purge by key, route, resource id, path and
tag, on memory, a real valkey-server and the 3-node cluster; and across two uvicorn processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cache_helpers import guard
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import JobConfig
from asgi_guard.config import CacheConfig
from asgi_guard.stages.cache import CachePurger, add_tags, purge_endpoint
from asgi_guard.state import Backend
from asgi_guard_dev.local import free_port

HERE = Path(__file__).parent
TOKEN = "s3cret-token"


class Items:
    def __init__(self) -> None:
        self.calls = 0

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        resource_id = request.path_params["resource_id"]
        add_tags(request, f"owner-{int(resource_id) % 2}")
        return JSONResponse(
            {"item": resource_id, "call": self.calls}, headers={"cache-tag": f"item-{resource_id}, all"}
        )


def build(backend: Backend, key_prefix: str, items: Items) -> Any:
    configs = {
        "/items/{resource_id}": JobConfig(endpoint_name="items", cache=CacheConfig(enabled=True)),
        "/other/{resource_id}": JobConfig(endpoint_name="other", cache=CacheConfig(enabled=True)),
    }
    routes = [Route("/items/{resource_id}", items.endpoint), Route("/other/{resource_id}", items.endpoint)]
    app = guard(backend, routes, configs, key_prefix)
    app.app.routes.append(Route("/_purge", purge_endpoint(app.runtime, TOKEN), methods=["GET", "POST"]))
    return app


async def states(client: httpx.AsyncClient, paths: list[str]) -> list[str]:
    return [(await client.get(p)).headers["x-cache"] for p in paths]


PATHS = ["/items/1", "/items/2", "/items/3", "/other/1"]


async def warm(client: httpx.AsyncClient) -> None:
    for path in PATHS:
        await client.get(path)
    assert await states(client, PATHS) == ["HIT"] * 4


@pytest.mark.parametrize(
    ("what", "after"),
    [
        ({"tags": ["item-2"]}, ["HIT", "MISS", "HIT", "HIT"]),
        ({"tags": ["owner-1"]}, ["MISS", "HIT", "MISS", "MISS"]),  # request.state tags
        ({"tags": ["all"]}, ["MISS", "MISS", "MISS", "MISS"]),
        ({"routes": ["other"]}, ["HIT", "HIT", "HIT", "MISS"]),
        ({"resource_ids": ["1"]}, ["MISS", "HIT", "HIT", "MISS"]),
        ({"paths": ["/items/3"]}, ["HIT", "HIT", "MISS", "HIT"]),
        ({"tags": ["nothing"]}, ["HIT", "HIT", "HIT", "HIT"]),
    ],
)
async def test_purge_api(
    backend: Backend, make_client: Any, key_prefix: str, what: dict[str, Any], after: list[str]
) -> None:
    items = Items()
    app = build(backend, key_prefix, items)
    client = make_client(app)
    await warm(client)
    purged = await CachePurger(app.runtime).purge(**what)
    assert purged == after.count("MISS")
    assert await states(client, PATHS) == after


async def test_purge_by_key(backend: Backend, make_client: Any, key_prefix: str) -> None:
    items = Items()
    app = build(backend, key_prefix, items)
    seen: list[str] = []

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        ctx = scope.get("asgi_guard")
        decision = ctx.decisions.get("cache") if ctx is not None else None
        if decision is not None and "key" in decision.detail:
            seen.append(decision.detail["key"])

    client = make_client(outer)
    await warm(client)
    assert await CachePurger(app.runtime).purge(keys=[seen[0]]) == 1
    assert await states(client, PATHS) == ["MISS", "HIT", "HIT", "HIT"]


async def test_purge_endpoint(backend: Backend, make_client: Any, key_prefix: str) -> None:
    app = build(backend, key_prefix, Items())
    client = make_client(app)
    await warm(client)
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert (await client.post("/_purge", json={"tags": ["item-1"]})).status_code == 401
    wrong = await client.post("/_purge", json={"tags": ["item-1"]}, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["content-type"] == "application/problem+json"
    assert (await client.get("/_purge", headers=auth)).status_code == 405
    assert (await client.post("/_purge", content=b"{oops", headers=auth)).status_code == 400
    assert (await client.post("/_purge", json={"tags": "item-1"}, headers=auth)).status_code == 400
    assert (await client.post("/_purge", json={"routes": ["nope"]}, headers=auth)).status_code == 404
    done = await client.post("/_purge", json={"tags": ["item-1"]}, headers=auth)
    assert done.status_code == 200 and done.json() == {"purged": 2}  # /items/1 and /other/1
    assert await states(client, PATHS) == ["MISS", "HIT", "HIT", "MISS"]


@pytest.fixture
def two_servers(valkey_url: str, key_prefix: str) -> Iterator[list[str]]:
    """Two uvicorn processes serving tests/cache/purge_app.py, sharing one real valkey-server."""
    env = {
        **os.environ,
        "ASGI_GUARD_VALKEY_URL": valkey_url,
        "ASGI_GUARD_KEY_PREFIX": key_prefix,
        "PURGE_TOKEN": TOKEN,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "purge_app:app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    env=env,
                    cwd=HERE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    httpx.get(url + "/nothing", timeout=1.0)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_purge_by_tag_across_two_processes(two_servers: list[str]) -> None:
    a, b = two_servers
    # two workers behind one proxy: the same Host (the port is part of the origin, hence the key)
    async with httpx.AsyncClient(timeout=10, headers={"host": "shop.example"}) as client:
        first = await client.get(a + "/items/1")
        assert first.headers["x-cache"] == "MISS"
        await client.get(a + "/items/2")
        seen_by_b = await client.get(b + "/items/1")  # one shared store: B answers A's entry
        assert seen_by_b.headers["x-cache"] == "HIT" and seen_by_b.json() == first.json()
        purge = await client.post(
            a + "/_cache/purge", json={"tags": ["item-1"]}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert purge.status_code == 200 and purge.json() == {"purged": 1}
        after = await client.get(b + "/items/1")
        assert after.headers["x-cache"] == "MISS" and after.json()["pid"] != first.json()["pid"]
        assert (await client.get(b + "/items/2")).headers["x-cache"] == "HIT"
        # by a request.state tag, from the other process this time
        purge = await client.post(
            b + "/_cache/purge", json={"tags": ["owner-0"]}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert purge.json() == {"purged": 1}
        assert (await client.get(a + "/items/2")).headers["x-cache"] == "MISS"


async def _first_event(client: httpx.AsyncClient, url: str) -> tuple[str, httpx.Response]:
    request = client.build_request("GET", url + "/events")
    response = await client.send(request, stream=True)
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            return line, response
    raise AssertionError("stream ended")


@pytest.mark.parametrize("where", ["same_process", "other_process"])
async def test_endless_sse_never_holds_a_second_client(two_servers: list[str], where: str) -> None:
    """Real uvicorn, an endless event stream: a second client (same process: in-process single
    flight; other process: the Valkey fill lock) gets its first event at once."""
    a, b = two_servers
    second_url = a if where == "same_process" else b
    async with httpx.AsyncClient(timeout=5, headers={"host": "shop.example"}) as client:
        _, first = await _first_event(client, a)
        started = time.monotonic()
        try:
            line, second = await asyncio.wait_for(_first_event(client, second_url), 3.0)
            assert time.monotonic() - started < 2.0 and line.endswith(" 0")
            assert second.headers["x-cache"] == "MISS"
            await second.aclose()
        finally:
            await first.aclose()


@pytest.mark.parametrize("what", [{"tags": ["all"]}, {"routes": ["items"]}, {"resource_ids": ["1"]}])
async def test_purge_reaches_every_route_sharing_a_label(
    backend: Backend, make_client: Any, key_prefix: str, what: dict[str, list[str]]
) -> None:
    """Two routes named alike (one label) with their own cache settings: on the embedded store they
    hold two stores (capacity and TTL differ); a purge by label, tag or resource reaches both."""
    items = Items()
    configs = {
        "/items/{resource_id}": JobConfig(endpoint_name="items", cache=CacheConfig(enabled=True)),
        "/more/{resource_id}": JobConfig(
            endpoint_name="items", cache=CacheConfig(enabled=True, default={"cache_ttl": 30})
        ),
    }
    routes = [Route("/items/{resource_id}", items.endpoint), Route("/more/{resource_id}", items.endpoint)]
    app = guard(backend, routes, configs, key_prefix)
    client = make_client(app)
    paths = ["/items/1", "/more/1"]
    for path in paths:
        await client.get(path)
    assert await states(client, paths) == ["HIT", "HIT"]
    assert await CachePurger(app.runtime).purge(**what) >= 1
    assert await states(client, paths) == ["MISS", "MISS"]
