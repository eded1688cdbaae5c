"""Rate limit + cache on Valkey: the cache lookup rides in the rate-limit round trip.

Round trips are counted on the client side (the backend client's single commands and pipeline
executions), against real valkey-server processes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cache_helpers import guard
from guardkit import UNCROSSED_WINDOW
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import JobConfig
from asgi_guard.config import CacheConfig, PoolingConfig, RateLimitConfig
from asgi_guard.state import MemoryBackend, ValkeyBackend


class RoundTrips:
    """Wraps a ValkeyBackend's client: each command sent alone is one round trip, each pipeline
    execute() is one; `max_in_flight` tells whether calls overlapped."""

    def __init__(self, backend: ValkeyBackend) -> None:
        client = backend.client
        self.batches: list[list[str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        execute_command, pipeline = client.execute_command, client.pipeline

        async def counted(names: list[str], call: Any) -> Any:
            self.batches.append(names)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await call
            finally:
                self.in_flight -= 1

        def counted_execute_command(*args: Any, **kwargs: Any) -> Any:
            return counted([str(args[0]).upper()], execute_command(*args, **kwargs))

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            def counted_execute(*a: Any, **k: Any) -> Any:
                names = [str(command[0]).upper() for command, _ in pipe.command_stack]
                return counted(names, execute(*a, **k))

            pipe.execute = counted_execute
            return pipe

        client.execute_command = counted_execute_command
        client.pipeline = counted_pipeline

    def reset(self) -> None:
        self.batches.clear()
        self.max_in_flight = 0

    @property
    def trips(self) -> int:
        return len(self.batches)


class Handler:
    def __init__(self, delay: float = 0) -> None:
        self.calls = 0
        self.delay = delay

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        call = self.calls
        if self.delay:
            await asyncio.sleep(self.delay)
        return JSONResponse({"call": call, "path": request.url.path})


def limited_and_cached(limit: int = 1000, **cache: Any) -> JobConfig:
    return JobConfig(
        endpoint_name="items",
        rate_limit=RateLimitConfig(
            enabled=True,
            algo="fixed_window",
            fixed_window={"limit": limit, "window": UNCROSSED_WINDOW},
            key_by=["header:x-tenant"],
        ),
        cache=CacheConfig(enabled=True, shared=True, **cache),
    )


def backend_for(url: str, key_prefix: str) -> ValkeyBackend:
    return ValkeyBackend(url, PoolingConfig(socket_timeout=3.0, connect_timeout=3.0), key_prefix)


async def test_hit_is_one_round_trip_on_standalone(
    valkey_url: str, make_client: Any, key_prefix: str
) -> None:
    backend = backend_for(valkey_url, key_prefix)
    trips = RoundTrips(backend)
    handler = Handler()
    app = guard(
        backend, [Route("/items/{id}", handler.endpoint)], {"/items/{id}": limited_and_cached()}, key_prefix
    )
    client = make_client(app)
    try:
        first = await client.get("/items/1", headers={"x-tenant": "a"})
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
        await client.get("/items/2", headers={"x-tenant": "a"})  # scripts are loaded by now

        trips.reset()
        miss = await client.get("/items/3", headers={"x-tenant": "a"})
        assert miss.headers["x-cache"] == "MISS"
        # limit + locking lookup fused into one script call; the store: a miss is 2 round trips
        assert trips.batches == [["EVALSHA"], ["EVALSHA"]]

        trips.reset()
        hit = await client.get("/items/1", headers={"x-tenant": "a"})
        assert trips.trips == 1 and trips.batches == [["EVALSHA"]]
        assert hit.status_code == 200 and hit.json() == first.json() == {"call": 1, "path": "/items/1"}
        assert hit.headers["x-cache"] == "HIT"
        assert int(hit.headers["age"]) >= 0
        assert hit.headers["cache-status"].startswith("asgi-guard; hit; ttl=")
        assert hit.headers["content-type"] == "application/json"
        assert "ratelimit" in hit.headers and "ratelimit-policy" in hit.headers
        assert ";r=996;" in hit.headers["ratelimit"]  # the fourth request of tenant a: counted
        assert handler.calls == 3
    finally:
        await app.runtime.shutdown()


async def test_refresh_request_skips_the_prefetch(valkey_url: str, make_client: Any, key_prefix: str) -> None:
    backend = backend_for(valkey_url, key_prefix)
    trips = RoundTrips(backend)
    handler = Handler()
    app = guard(backend, [Route("/r", handler.endpoint)], {"/r": limited_and_cached()}, key_prefix)
    client = make_client(app)
    try:
        await client.get("/r", headers={"x-tenant": "a", "cache-control": "no-cache"})  # limit alone: loaded
        await client.get("/r", headers={"x-tenant": "a"})  # a hit: the fused limit + lookup loaded
        trips.reset()
        fresh = await client.get("/r", headers={"x-tenant": "a", "cache-control": "no-cache"})
        assert fresh.headers["x-cache"] == "MISS" and fresh.json()["call"] == 2
        assert trips.batches == [["EVALSHA"], ["EVALSHA"]]  # the limit alone, then the store
        trips.reset()
        hit = await client.get("/r", headers={"x-tenant": "a"})
        assert hit.headers["x-cache"] == "HIT" and hit.json()["call"] == 2 and trips.trips == 1
    finally:
        await app.runtime.shutdown()


async def test_rate_limited_request_leaves_no_lock(
    valkey_url: str, make_client: Any, key_prefix: str
) -> None:
    backend = backend_for(valkey_url, key_prefix)
    handler = Handler()
    config = limited_and_cached(limit=1, single_flight_timeout=3.0)
    app = guard(backend, [Route("/items/{id}", handler.endpoint)], {"/items/{id}": config}, key_prefix)
    client = make_client(app)
    try:
        assert (await client.get("/items/1", headers={"x-tenant": "a"})).status_code == 200
        rejected = await client.get("/items/2", headers={"x-tenant": "a"})  # a miss, then the 429
        assert rejected.status_code == 429 and "x-cache" not in rejected.headers
        locks = [k async for k in backend.client.scan_iter(match=f"{key_prefix}:cache:*:l:*")]
        assert locks == []
        started = time.monotonic()
        allowed = await client.get("/items/2", headers={"x-tenant": "b"})
        assert time.monotonic() - started < 1.0  # ran at once: no lock to wait out
        assert allowed.status_code == 200 and allowed.headers["x-cache"] == "MISS"
        assert allowed.json() == {"call": 2, "path": "/items/2"} and handler.calls == 2
        # a rejected request that finds a hit is still rejected (and counted as a use of the entry)
        again = await client.get("/items/1", headers={"x-tenant": "a"})
        assert again.status_code == 429 and handler.calls == 2
    finally:
        await app.runtime.shutdown()


async def test_failed_cache_part_keeps_the_limit_answer(
    valkey_url: str, make_client: Any, key_prefix: str
) -> None:
    """The cache part fails on the server (its entry key holds the wrong type): the limit still
    decides from the same round trip, and the cache stage serves uncached (fail_open)."""
    backend = backend_for(valkey_url, key_prefix)
    trips = RoundTrips(backend)
    handler = Handler()
    app = guard(backend, [Route("/f", handler.endpoint)], {"/f": limited_and_cached(limit=3)}, key_prefix)
    client = make_client(app)
    try:
        assert (await client.get("/f", headers={"x-tenant": "a"})).headers["x-cache"] == "MISS"
        label = next(iter(app.registry)).label
        entries = await backend.client.keys(backend.key("cache", label, "e") + ":*")
        assert len(entries) == 1
        await backend.client.set(entries[0], "not a hash")
        trips.reset()
        first = await client.get("/f", headers={"x-tenant": "a"})
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
        assert "store-unavailable" in first.headers["cache-status"]
        assert trips.batches[0] == ["EVALSHA"]  # limit + lookup, one fused call
        second = await client.get("/f", headers={"x-tenant": "a"})
        assert second.status_code == 200 and ";r=0;" in second.headers["ratelimit"]
        third = await client.get("/f", headers={"x-tenant": "a"})
        assert third.status_code == 429 and handler.calls == 3
    finally:
        await app.runtime.shutdown()


async def test_flushed_scripts_are_reloaded(valkey_url: str, make_client: Any, key_prefix: str) -> None:
    backend = backend_for(valkey_url, key_prefix)
    trips = RoundTrips(backend)
    handler = Handler()
    app = guard(backend, [Route("/s", handler.endpoint)], {"/s": limited_and_cached()}, key_prefix)
    client = make_client(app)
    try:
        await client.get("/s", headers={"x-tenant": "a"})
        await backend.client.script_flush()
        hit = await client.get("/s", headers={"x-tenant": "a"})  # NOSCRIPT for both: each reloaded
        assert hit.headers["x-cache"] == "HIT" and ";r=998;" in hit.headers["ratelimit"]
        trips.reset()
        hit = await client.get("/s", headers={"x-tenant": "a"})
        assert hit.headers["x-cache"] == "HIT" and ";r=997;" in hit.headers["ratelimit"]
        assert trips.batches == [["EVALSHA"]] and handler.calls == 1
    finally:
        await app.runtime.shutdown()


async def test_cluster_hit(valkey_cluster_url: str, make_client: Any, key_prefix: str) -> None:
    """On the cluster the two scripts' keys live in different slots: they run concurrently, one
    call each, so a hit still waits for one round trip."""
    backend = backend_for(valkey_cluster_url, key_prefix)
    trips = RoundTrips(backend)
    handler = Handler()
    app = guard(
        backend, [Route("/items/{id}", handler.endpoint)], {"/items/{id}": limited_and_cached()}, key_prefix
    )
    client = make_client(app)
    try:
        first = await client.get("/items/1", headers={"x-tenant": "a"})
        assert first.headers["x-cache"] == "MISS"
        trips.reset()
        hit = await client.get("/items/1", headers={"x-tenant": "a"})
        assert hit.status_code == 200 and hit.json() == first.json() and handler.calls == 1
        assert hit.headers["x-cache"] == "HIT" and hit.headers["cache-status"].startswith("asgi-guard; hit")
        assert ";r=998;" in hit.headers["ratelimit"]
        assert trips.batches == [["EVALSHA"], ["EVALSHA"]] and trips.max_in_flight == 2
    finally:
        await app.runtime.shutdown()


@pytest.mark.parametrize("server", ["valkey_url", "valkey_cluster_url"])
async def test_single_flight_still_holds(
    request: pytest.FixtureRequest, server: str, make_client: Any, key_prefix: str
) -> None:
    """Two apps (as two worker processes) on one server, 40 concurrent misses: the prefetch misses
    without locking, then the normal lookup locks, so the handler still runs once."""
    url = request.getfixturevalue(server)
    handler = Handler(delay=0.3)
    backends = [backend_for(url, key_prefix) for _ in "ab"]
    apps = [
        guard(b, [Route("/slow", handler.endpoint)], {"/slow": limited_and_cached()}, key_prefix)
        for b in backends
    ]
    try:
        clients = [make_client(app) for app in apps]
        await asyncio.gather(*(c.get("/warm-up") for c in clients))
        responses = await asyncio.gather(
            *(clients[i % 2].get("/slow", headers={"x-tenant": "a"}) for i in range(40))
        )
        assert handler.calls == 1
        assert all(r.status_code == 200 and r.json()["call"] == 1 for r in responses)
        assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 39 + ["MISS"]
    finally:
        for app in apps:
            await app.runtime.shutdown()


async def test_memory_backend_registers_no_prefetch(make_client: Any) -> None:
    handler = Handler()
    app = guard(MemoryBackend(), [Route("/m", handler.endpoint)], {"/m": limited_and_cached()})
    assert not hasattr(app.runtime.backend, "riders")
    client = make_client(app)
    assert (await client.get("/m")).headers["x-cache"] == "MISS"
    assert (await client.get("/m")).headers["x-cache"] == "HIT" and handler.calls == 1


async def _commands(client: Any) -> int:
    """EVALSHA calls the server ran (INFO commandstats also counts the commands scripts run, so
    script calls are counted, not their insides; no other top-level command is sent)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("limited", [True, False])
async def test_round_trips_counted_on_the_server(
    own_valkey: Any, make_client: Any, key_prefix: str, limited: bool
) -> None:
    """A hit is 1 round trip, a miss 2, counted by the client (round trips) and by a private
    valkey-server (INFO commandstats: script calls)."""
    backend = backend_for(own_valkey.url, key_prefix)
    trips = RoundTrips(backend)
    handler = Handler()
    config = (
        limited_and_cached() if limited else JobConfig(endpoint_name="plain", cache=CacheConfig(enabled=True))
    )
    app = guard(backend, [Route("/items/{id}", handler.endpoint)], {"/items/{id}": config}, key_prefix)
    client = make_client(app)
    try:
        await client.get("/items/0", headers={"x-tenant": "a"})  # scripts loaded
        await client.get("/items/0", headers={"x-tenant": "a"})
        per_request = 1  # script calls in the first round trip (limit + lookup: one fused call)

        before = await _commands(backend.client)
        trips.reset()
        miss = await client.get("/items/1", headers={"x-tenant": "a"})
        assert miss.headers["x-cache"] == "MISS" and trips.trips == 2
        assert await _commands(backend.client) - before == per_request + 1  # + the store

        before = await _commands(backend.client)
        trips.reset()
        hit = await client.get("/items/1", headers={"x-tenant": "a"})
        assert hit.headers["x-cache"] == "HIT" and trips.trips == 1
        assert await _commands(backend.client) - before == per_request
    finally:
        await app.runtime.shutdown()


async def test_a_wrong_vary_guess_costs_one_more_lookup_and_never_a_wrong_variant(
    valkey_url: str, make_client: Any, key_prefix: str
) -> None:
    """The lookup sends its guess of the entry's Vary names (the route's last seen), never the
    request's headers. An entry another process stored under other names answers with its names:
    the stage looks up again with them (one round trip more, once) and serves the variant they
    select, never another one."""
    calls = {"a": 0, "b": 0}

    def endpoint(side: str) -> Any:
        async def hello(request: Request) -> Response:
            calls[side] += 1
            lang = request.headers.get("accept-language", "-")
            return JSONResponse({"lang": lang, "by": side}, headers={"vary": "Accept-Language"})

        return hello

    first, second = backend_for(valkey_url, key_prefix), backend_for(valkey_url, key_prefix)
    trips = RoundTrips(second)
    app_a = guard(first, [Route("/h", endpoint("a"))], {"/h": limited_and_cached()}, key_prefix)
    warm = Handler()
    app_b = guard(
        second,
        [Route("/h", endpoint("b")), Route("/warm", warm.endpoint), Route("/warm2", warm.endpoint)],
        {
            "/h": limited_and_cached(),
            "/warm": limited_and_cached(),
            "/warm2": JobConfig(endpoint_name="warm2", cache=CacheConfig(enabled=True, shared=True)),
        },
        key_prefix,
    )
    a, b = make_client(app_a), make_client(app_b)
    try:
        fr = {"x-tenant": "t", "accept-language": "fr"}
        assert (await a.get("/h", headers=fr)).json() == {"lang": "fr", "by": "a"}
        for path in ("/warm", "/warm2"):  # b's scripts loaded, fused and alone (other routes' stores)
            await b.get(path, headers={"x-tenant": "t"})
        trips.reset()
        hit = await b.get("/h", headers=fr)  # b never saw this route's entry: it guesses no Vary
        assert hit.json() == {"lang": "fr", "by": "a"} and hit.headers["x-cache"] == "HIT"
        assert trips.batches == [["EVALSHA"], ["EVALSHA"]]  # fused limit + wrong guess, then the lookup
        trips.reset()
        again = await b.get("/h", headers=fr)
        assert again.headers["x-cache"] == "HIT" and trips.trips == 1  # the guess is right now
        en = await b.get("/h", headers={"x-tenant": "t", "accept-language": "en"})
        assert en.json() == {"lang": "en", "by": "b"} and en.headers["x-cache"] == "MISS"
        assert calls == {"a": 1, "b": 1}
    finally:
        await app_a.runtime.shutdown()
        await app_b.runtime.shutdown()


async def test_keys_whose_vary_differs_keep_their_own_guess(
    valkey_url: str, make_client: Any, key_prefix: str
) -> None:
    """One route, keys whose entries vary differently (GZip compressing only large bodies does
    this): each key keeps its own guess of the names, so alternating hits cost one round trip each,
    not two (the route-wide guess flipped on every other lookup; found by this round's attacker)."""
    backend = backend_for(valkey_url, key_prefix)
    trips = RoundTrips(backend)

    async def endpoint(request: Request) -> Response:
        i = request.path_params["i"]
        return JSONResponse({"i": i}, headers={"vary": "accept-language"} if i == "1" else {})

    app = guard(backend, [Route("/h/{i}", endpoint)], {"/h/{i}": limited_and_cached()}, key_prefix)
    client = make_client(app)
    try:
        for i in ("1", "2", "1", "2"):  # fill both, then one lookup each to learn their names
            await client.get(f"/h/{i}", headers={"x-tenant": "t"})
        trips.reset()
        for n in range(40):
            hit = await client.get(f"/h/{1 + n % 2}", headers={"x-tenant": "t"})
            assert hit.headers["x-cache"] == "HIT" and hit.json() == {"i": str(1 + n % 2)}
        assert trips.trips == 40
    finally:
        await app.runtime.shutdown()
