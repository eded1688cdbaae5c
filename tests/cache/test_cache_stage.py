"""The cache stage as a client sees it: X-Cache, Age, what is stored, keys, single flight, faults."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cache_helpers import guard
from guardkit import Clock
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import asgi_guard.stack
from asgi_guard import JobConfig
from asgi_guard.config import CacheConfig, PoolingConfig
from asgi_guard.core.context import get_guard
from asgi_guard.core.stage import Stage
from asgi_guard.stages import STAGES
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend
from asgi_guard_dev.valkey import ValkeyDeployment


def cached(**cache: Any) -> JobConfig:
    return JobConfig(endpoint_name=cache.pop("name", "items"), cache=CacheConfig(enabled=True, **cache))


class Handler:
    """Counts calls; answers with the call number so a replayed body is recognisable."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0) -> None:
        self.calls = 0
        self.status = status
        self.headers = headers or {}
        self.delay = delay
        self.decisions: list[dict[str, Any]] = []

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        call = self.calls
        if self.delay:
            await asyncio.sleep(self.delay)
        guard_ctx = get_guard(request)
        assert guard_ctx is not None
        return JSONResponse(
            {"call": call, "path": request.url.path, "query": request.url.query},
            status_code=self.status,
            headers=self.headers,
        )


async def test_miss_then_hit(backend: Backend, make_client: Any, key_prefix: str, clock: Clock) -> None:
    handler = Handler()
    app = guard(
        backend, [Route("/items/{item_id}", handler.endpoint)], {"/items/{item_id}": cached()}, key_prefix
    )
    client = make_client(app)
    first = await client.get("/items/1")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS" and "age" not in first.headers
    assert first.headers["cache-status"] == "asgi-guard; fwd=miss"
    second = await client.get("/items/1")
    assert second.status_code == 200 and second.headers["x-cache"] == "HIT"
    assert second.json() == first.json() == {"call": 1, "path": "/items/1", "query": ""}
    assert int(second.headers["age"]) >= 0 and second.headers["cache-status"].startswith("asgi-guard; hit")
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert second.headers["content-type"] == "application/json"
    other = await client.get("/items/2")
    assert other.headers["x-cache"] == "MISS" and other.json()["call"] == 2
    query = await client.get("/items/1?page=2")
    assert query.headers["x-cache"] == "MISS" and query.json()["call"] == 3
    assert handler.calls == 3


async def test_age_and_ttl_on_memory(make_client: Any, clock: Clock) -> None:
    handler = Handler()
    config = cached(default={"cache_ttl": 30}, lru={"capacity": 10, "default_ttl": 20})
    app = guard(MemoryBackend(clock=clock), [Route("/a", handler.endpoint)], {"/a": config})
    client = make_client(app)
    await client.get("/a")
    clock.now += 12
    hit = await client.get("/a")
    assert hit.headers["x-cache"] == "HIT" and hit.headers["age"] == "12"
    assert hit.headers["cache-status"] == "asgi-guard; hit; ttl=8"  # 30 s bounded by default_ttl 20
    clock.now += 8
    expired = await client.get("/a")
    assert expired.headers["x-cache"] == "MISS" and handler.calls == 2


@pytest.mark.parametrize(
    ("status", "headers", "shared"),
    [
        (201, {}, False),
        (404, {}, False),
        (500, {}, False),
        (200, {"cache-control": "no-store"}, False),
        (200, {"cache-control": "max-age=0, no-store"}, True),
        (200, {"cache-control": "private"}, True),
        (200, {"set-cookie": "session=1"}, True),
    ],
)
async def test_not_stored(make_client: Any, status: int, headers: dict[str, str], shared: bool) -> None:
    handler = Handler(status, headers)
    app = guard(MemoryBackend(), [Route("/a", handler.endpoint)], {"/a": cached(shared=shared)})
    client = make_client(app)
    for _ in range(2):
        response = await client.get("/a")
        assert response.status_code == status and response.headers["x-cache"] == "MISS"
    assert handler.calls == 2


async def test_private_is_stored_per_user(make_client: Any, fake_auth: None) -> None:
    handler = Handler(200, {"cache-control": "private, max-age=60"})
    app = guard(MemoryBackend(), [Route("/a", handler.endpoint)], {"/a": cached()})
    client = make_client(app)
    await client.get("/a", headers={"x-user": "ann"})
    hit = await client.get("/a", headers={"x-user": "ann"})
    assert hit.headers["x-cache"] == "HIT" and handler.calls == 1


async def test_request_no_cache_refreshes(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Handler()
    app = guard(backend, [Route("/a", handler.endpoint)], {"/a": cached()}, key_prefix)
    client = make_client(app)
    await client.get("/a")
    refreshed = await client.get("/a", headers={"cache-control": "no-cache"})
    assert refreshed.headers["x-cache"] == "MISS" and refreshed.json()["call"] == 2
    assert refreshed.headers["cache-status"] == "asgi-guard; fwd=request"
    hit = await client.get("/a")
    assert hit.headers["x-cache"] == "HIT" and hit.json()["call"] == 2
    pragma = await client.get("/a", headers={"pragma": "no-cache"})
    assert pragma.json()["call"] == 3
    # no-store on the request: served fresh, and the stored entry is left alone
    await client.get("/a", headers={"cache-control": "no-cache, no-store"})
    assert (await client.get("/a")).json()["call"] == 3


async def test_per_user_unless_shared(
    backend: Backend, make_client: Any, key_prefix: str, fake_auth: None
) -> None:
    private, shared = Handler(), Handler()
    app = guard(
        backend,
        [Route("/mine", private.endpoint), Route("/all", shared.endpoint)],
        {"/mine": cached(name="mine"), "/all": cached(name="all", shared=True)},
        key_prefix,
    )
    client = make_client(app)
    for path in ("/mine", "/all"):
        ann = await client.get(path, headers={"x-user": "ann"})
        bob = await client.get(path, headers={"x-user": "bob"})
        ann_again = await client.get(path, headers={"x-user": "ann"})
        assert ann.headers["x-cache"] == "MISS" and ann_again.headers["x-cache"] == "HIT"
        assert bob.headers["x-cache"] == ("MISS" if path == "/mine" else "HIT")
    assert private.calls == 2 and shared.calls == 1


async def test_vary_headers_are_part_of_the_key(make_client: Any) -> None:
    handler = Handler()
    config = cached(vary_headers=["Accept-Language"])
    app = guard(MemoryBackend(), [Route("/a", handler.endpoint)], {"/a": config})
    client = make_client(app)
    await client.get("/a", headers={"accept-language": "en"})
    assert (await client.get("/a", headers={"accept-language": "fr"})).headers["x-cache"] == "MISS"
    assert (await client.get("/a", headers={"accept-language": "en"})).headers["x-cache"] == "HIT"
    assert (await client.get("/a", headers={"accept": "text/html", "accept-language": "en"})).json()[
        "call"
    ] == 1
    assert (await client.get("/a")).headers["x-cache"] == "MISS"
    assert handler.calls == 3


async def test_method_is_part_of_the_key(make_client: Any) -> None:
    handler = Handler()  # POST is cached only when the route says so (default: GET and HEAD)
    config = cached(methods=["GET", "POST"])
    app = guard(MemoryBackend(), [Route("/a", handler.endpoint, methods=["GET", "POST"])], {"/a": config})
    client = make_client(app)
    await client.get("/a")
    assert (await client.post("/a")).headers["x-cache"] == "MISS"
    assert (await client.post("/a")).headers["x-cache"] == "HIT"
    assert handler.calls == 2


async def test_resource_id_from_body_is_part_of_the_key(make_client: Any) -> None:
    async def echo(request: Request) -> Response:
        echo.calls += 1  # type: ignore[attr-defined]
        return JSONResponse(await request.json())

    echo.calls = 0  # type: ignore[attr-defined]
    config = JobConfig(
        endpoint_name="jobs", resource_id_from_body=True, cache=CacheConfig(enabled=True, methods=["POST"])
    )
    app = guard(MemoryBackend(), [Route("/jobs", echo, methods=["POST"])], {"/jobs": config})
    client = make_client(app)
    first = await client.post("/jobs", json={"resource_id": "r1"})
    second = await client.post("/jobs", json={"resource_id": "r2"})
    again = await client.post("/jobs", json={"resource_id": "r1"})
    assert first.json() == {"resource_id": "r1"} and second.json() == {"resource_id": "r2"}
    assert again.headers["x-cache"] == "HIT" and again.json() == {"resource_id": "r1"}
    assert echo.calls == 2  # type: ignore[attr-defined]


async def test_eviction_through_the_stack(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Handler()
    config = cached(algo="fifo", fifo={"capacity": 2})
    app = guard(backend, [Route("/items/{n}", handler.endpoint)], {"/items/{n}": config}, key_prefix)
    client = make_client(app)
    for n in (1, 2, 1, 3):  # 1 and 2 stored, 1 is a hit, 3 evicts 1 (first in)
        await client.get(f"/items/{n}")
    assert (await client.get("/items/2")).headers["x-cache"] == "HIT"
    assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
    assert handler.calls == 4


async def test_single_flight(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Handler(delay=0.2)
    app = guard(backend, [Route("/slow", handler.endpoint)], {"/slow": cached()}, key_prefix)
    client = make_client(app)
    responses = await asyncio.gather(*(client.get("/slow") for _ in range(50)))
    assert handler.calls == 1
    assert all(r.status_code == 200 and r.json()["call"] == 1 for r in responses)
    assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 49 + ["MISS"]


async def test_single_flight_wait_is_bounded(make_client: Any) -> None:
    handler = Handler(delay=0.5)
    config = cached(single_flight_timeout=0.05)
    app = guard(MemoryBackend(), [Route("/slow", handler.endpoint)], {"/slow": config})
    client = make_client(app)
    responses = await asyncio.gather(*(client.get("/slow") for _ in range(3)))
    assert handler.calls == 3 and all(r.headers["x-cache"] == "MISS" for r in responses)


async def test_single_flight_leader_failure_lets_followers_run(make_client: Any) -> None:
    calls = 0

    async def flaky(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return PlainTextResponse("boom" if calls == 1 else "ok", status_code=503 if calls == 1 else 200)

    app = guard(MemoryBackend(), [Route("/f", flaky)], {"/f": cached()})
    client = make_client(app)
    responses = await asyncio.gather(*(client.get("/f") for _ in range(3)))
    assert sorted(r.status_code for r in responses) == [200, 200, 503]
    assert all(r.headers["x-cache"] == "MISS" for r in responses)


async def test_decisions_say_hit(make_client: Any) -> None:
    seen: list[dict[str, Any]] = []
    handler = Handler()
    app = guard(MemoryBackend(), [Route("/a", handler.endpoint)], {"/a": cached()})

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        ctx = scope.get("asgi_guard")
        if ctx is not None:
            seen.append(ctx.decisions["cache"].fields())

    client = make_client(outer)
    await client.get("/a")
    await client.get("/a")
    assert seen[0]["hit"] is False and seen[0]["result"] == "miss" and seen[0]["stored"] is True
    assert seen[1]["hit"] is True and seen[1]["result"] == "hit"


def _faults(label: str) -> float:
    return (
        REGISTRY.get_sample_value("asgi_guard_backend_faults_total", {"route": label, "stage": "cache"})
        or 0.0
    )


async def test_store_down_serves_uncached(
    own_valkey: ValkeyDeployment, make_client: Any, key_prefix: str
) -> None:
    backend = ValkeyBackend(
        own_valkey.url, PoolingConfig(socket_timeout=0.2, connect_timeout=0.2), key_prefix
    )
    handler = Handler()
    closed = JobConfig(endpoint_name="closed", cache=CacheConfig(enabled=True, fail_open=False))
    app = guard(
        backend,
        [Route("/open", handler.endpoint), Route("/closed", handler.endpoint)],
        {"/open": cached(name="open-cache"), "/closed": closed},
        key_prefix,
    )
    client = make_client(app)
    assert (await client.get("/open")).headers["x-cache"] == "MISS"
    assert (await client.get("/open")).headers["x-cache"] == "HIT"
    before = _faults("open-cache")
    own_valkey.nodes[0].stop()
    try:
        down = await client.get("/open")
        assert down.status_code == 200 and down.headers["x-cache"] == "MISS" and down.json()["call"] == 2
        assert down.headers["cache-status"].endswith("detail=store-unavailable")
        assert _faults("open-cache") == before + 1
        refused = await client.get("/closed")
        assert refused.status_code == 503 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["stage"] == "cache" and "retry-after" in refused.headers
    finally:
        own_valkey.nodes[0].start()
        await backend.close()


class CountingInnerStage(Stage):
    """Stands in for the credits stage (inner to the cache): counts the requests that reach it."""

    name = "counting"
    calls = 0

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        type(self).calls += 1
        await self.app(scope, receive, send)


async def test_hit_never_reaches_inner_stages(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_guard.stack, "STAGES", (*STAGES, CountingInnerStage))
    handler = Handler()
    client = make_client(guard(MemoryBackend(), [Route("/a", handler.endpoint)], {"/a": cached()}))
    for _ in range(3):
        await client.get("/a")
    assert CountingInnerStage.calls == 1 and handler.calls == 1


@pytest.mark.parametrize("server", ["valkey_url", "valkey_cluster_url"])
async def test_single_flight_across_processes(
    request: pytest.FixtureRequest, server: str, make_client: Any, key_prefix: str
) -> None:
    """Two apps with their own backends and runtimes (as two worker processes have) share one server:
    50 concurrent misses split across them run the handler once."""
    url = request.getfixturevalue(server)
    handler = Handler(delay=0.3)
    backends = [
        ValkeyBackend(url, PoolingConfig(socket_timeout=3.0, connect_timeout=3.0), key_prefix) for _ in "ab"
    ]
    try:
        clients = [
            make_client(guard(b, [Route("/slow", handler.endpoint)], {"/slow": cached()}, key_prefix))
            for b in backends
        ]
        await asyncio.gather(*(c.get("/health-check-warmup") for c in clients))  # start both runtimes
        responses = await asyncio.gather(*(clients[i % 2].get("/slow") for i in range(50)))
        assert handler.calls == 1
        assert all(r.status_code == 200 and r.json()["call"] == 1 for r in responses)
        assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 49 + ["MISS"]
    finally:
        for b in backends:
            await b.close()


async def test_unstorable_fill_releases_other_processes(
    valkey_url: str, make_client: Any, key_prefix: str
) -> None:
    handler = Handler(status=200, headers={"cache-control": "no-store"}, delay=0.2)
    backends = [ValkeyBackend(valkey_url, PoolingConfig(socket_timeout=3.0), key_prefix) for _ in "ab"]
    try:
        clients = [
            make_client(guard(b, [Route("/ns", handler.endpoint)], {"/ns": cached()}, key_prefix))
            for b in backends
        ]
        responses = await asyncio.gather(clients[0].get("/ns"), clients[1].get("/ns"))
        assert all(r.status_code == 200 and r.headers["x-cache"] == "MISS" for r in responses)
        assert handler.calls == 2  # the waiting app ran it itself once the lock was dropped
    finally:
        for b in backends:
            await b.close()


async def test_streamed_response_is_stored_whole_and_size_is_bounded(make_client: Any) -> None:
    async def stream(request: Request) -> Response:
        stream.calls += 1  # type: ignore[attr-defined]

        async def chunks() -> Any:
            for part in (b"one,", b"two,", b"three"):
                yield part

        return StreamingResponse(chunks(), media_type="text/plain")

    stream.calls = 0  # type: ignore[attr-defined]
    app = guard(
        MemoryBackend(),
        [Route("/s", stream), Route("/big", stream)],
        {
            "/s": cached(name="s", cache_streams=True),
            "/big": cached(name="big", max_entry_size=8, cache_streams=True),
        },
    )
    client = make_client(app)
    assert (await client.get("/s")).text == "one,two,three"
    hit = await client.get("/s")
    assert hit.headers["x-cache"] == "HIT" and hit.text == "one,two,three"
    assert (await client.get("/big")).text == "one,two,three"
    big = await client.get("/big")
    assert big.headers["x-cache"] == "MISS" and big.text == "one,two,three"
    assert stream.calls == 3  # type: ignore[attr-defined]
