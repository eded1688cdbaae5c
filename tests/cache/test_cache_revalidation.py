"""Stale-while-revalidate's background revalidation (RFC 5861 §3) is the guard's own request.

What a user may rely on (docs/stages/cache.md, "Revalidation"): it runs the handler once per key and
process with its own request id, through the stages inside the cache, never charging the client
(credits exempt) and never spending the client's rate limit (outer stages ran once, for the request
that found the stale entry); it asks for the whole response (a GET, without the client's conditional
or range headers); a failure leaves the stale entry, logs a warning and counts
`asgi_guard_cache_lookups_total{result="revalidation_failed"}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from binding.bindkit import JWT, bearer, settings
from guardkit import Clock
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.credits import credit_store
from asgi_guard.state import MemoryBackend

SWR = {"cache-control": "max-age=5, stale-while-revalidate=30"}


class Handler:
    """Counts its calls and records what each one saw."""

    def __init__(self, answer: Callable[[int], Response] | None = None) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer = answer

    async def __call__(self, request: Request) -> Response:
        n = len(self.seen)
        self.seen.append(
            {
                "method": request.method,
                "header_id": request.headers.get("x-request-id"),
                "guard_id": request.state.guard.request_id,
                "if_none_match": request.headers.get("if-none-match"),
            }
        )
        if self.answer is not None:
            return self.answer(n)
        return JSONResponse({"n": n}, headers=SWR)


def build(
    handler: Handler, clock: Clock, shared: bool = False, **job: Any
) -> tuple[Starlette, MemoryBackend]:
    registry = RouteRegistry()
    registry.register(
        "/page",
        JobConfig(endpoint_name="page", cache={"enabled": True, "shared": shared}, **job),
        methods=["GET"],
    )
    app = Starlette(routes=[Route("/page", handler.__call__)])
    backend = MemoryBackend(clock=clock)
    install(app, registry, runtime=GuardRuntime(settings(metrics_collect=True), backend))
    return app, backend


def client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


async def settled(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background revalidation did not finish")


async def counted(c: httpx.AsyncClient, family: str, label: str) -> float:
    """The value of `family` (a counter) on the sample that carries `label` (`name="value"`)."""
    text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(family + "{") and label in line and 'route="page"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def revalidations(c: httpx.AsyncClient, result: str) -> float:
    return await counted(c, "asgi_guard_cache_lookups_total", f'result="{result}"')


@pytest.mark.parametrize("shared", [True, False])
async def test_revalidation_spends_no_rate_limit_and_is_charged_only_for_a_per_principal_entry(
    shared: bool,
) -> None:
    """A shared entry's refresh serves everyone: free. An entry only alice reads is refreshed for
    her alone: she pays for it like a miss (free, polling inside the stale-while-revalidate window
    would buy endless handler runs for one charge: tests/attack/test_attack_revalidation.py)."""
    clock, handler = Clock(), Handler()
    limit = {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 3, "window": 3600}}
    app, backend = build(handler, clock, shared=shared, required_credits=1, rate_limit=limit, **JWT)
    await credit_store(backend).set("alice", 10)
    async with client(app) as c:
        before = await revalidations(c, "revalidated")  # the counters are the process's
        exempt = await counted(c, "asgi_guard_credits_total", 'action="exempt"')
        assert (await c.get("/page", headers=bearer())).json() == {"n": 0}  # miss: 1 credit, 1 of 3
        clock.now += 10
        stale = await c.get("/page", headers=bearer())  # 2 of 3
        assert stale.json() == {"n": 0} and "stale-while-revalidate" in stale.headers["cache-status"]
        await settled(lambda: len(handler.seen) == 2)
        await asyncio.sleep(0.05)
        fresh = await c.get("/page", headers=bearer())  # 3 of 3: the revalidation took none
        assert fresh.status_code == 200 and fresh.json() == {"n": 1}
        assert (await c.get("/page", headers=bearer())).status_code == 429
        assert await revalidations(c, "revalidated") == before + 1
        exempted = await counted(c, "asgi_guard_credits_total", 'action="exempt"')
        assert exempted == exempt + (1 if shared else 0)
    # the miss, and the revalidation of alice's own entry
    assert await credit_store(backend).balance("alice") == (9 if shared else 8)


async def test_revalidation_on_a_route_that_charges_hits_charges_the_hit_once() -> None:
    clock, handler = Clock(), Handler()
    app, backend = build(handler, clock, required_credits=1, charge_cache_hits=True, **JWT)
    await credit_store(backend).set("alice", 10)
    async with client(app) as c:
        await c.get("/page", headers=bearer())
        clock.now += 10
        assert (await c.get("/page", headers=bearer())).json() == {"n": 0}
        await settled(lambda: len(handler.seen) == 2)
        await asyncio.sleep(0.05)
        assert (await c.get("/page", headers=bearer())).json() == {"n": 1}
    assert await credit_store(backend).balance("alice") == 7  # three answers; the revalidation free


async def test_revalidation_has_its_own_request_id() -> None:
    clock, handler = Clock(), Handler()
    app, _ = build(handler, clock)
    async with client(app) as c:
        await c.get("/page", headers={"x-request-id": "first-1"})
        clock.now += 10
        stale = await c.get("/page", headers={"x-request-id": "trigger-1"})
        assert stale.headers["x-request-id"] == "trigger-1"
        await settled(lambda: len(handler.seen) == 2)
    refresh = handler.seen[1]
    assert refresh["guard_id"].startswith("revalidate-")
    assert refresh["header_id"] == refresh["guard_id"] != "trigger-1"


async def test_head_request_revalidates_the_get_entry_in_full() -> None:
    """A HEAD that finds a stale entry must not replace GET's entry with a body-less answer."""
    clock, handler = Clock(), Handler()
    app, _ = build(handler, clock)
    async with client(app) as c:
        await c.get("/page")
        clock.now += 10
        head = await c.head("/page")
        assert head.status_code == 200 and head.content == b""
        await settled(lambda: len(handler.seen) == 2)
        await asyncio.sleep(0.05)
        again = await c.get("/page")
    assert handler.seen[1]["method"] == "GET"
    assert again.json() == {"n": 1} and again.headers["x-cache"] == "HIT"


async def test_conditional_request_revalidates_in_full() -> None:
    """The client's If-None-Match selects a 304 for the client, never for the revalidation: a
    handler that honours it would answer 304, which cannot replace the entry."""

    def answer(n: int) -> Response:
        return JSONResponse({"n": n}, headers={**SWR, "etag": f'"v{n}"'})

    clock = Clock()
    handler = Handler(answer)

    async def conditional(request: Request) -> Response:
        if request.headers.get("if-none-match") == '"v0"':
            handler.seen.append({"if_none_match": '"v0"'})
            return Response(status_code=304, headers={"etag": '"v0"'})
        return await handler(request)

    registry = RouteRegistry()
    registry.register("/page", JobConfig(endpoint_name="page", cache={"enabled": True}), methods=["GET"])
    app = Starlette(routes=[Route("/page", conditional)])
    install(app, registry, runtime=GuardRuntime(settings(), MemoryBackend(clock=clock)))
    async with client(app) as c:
        await c.get("/page")
        clock.now += 10
        assert (await c.get("/page", headers={"if-none-match": '"v0"'})).status_code == 304
        await settled(lambda: len(handler.seen) == 2)
        await asyncio.sleep(0.05)
        again = await c.get("/page")
    assert handler.seen[1]["if_none_match"] is None
    assert again.json() == {"n": 1}


@pytest.mark.parametrize("failure", ["raises", "answers 500"])
async def test_failed_revalidation_keeps_the_stale_entry_and_logs(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(n: int) -> Response:
        if n == 0:
            return JSONResponse({"n": n}, headers=SWR)
        if failure == "raises":
            raise RuntimeError("backend of the handler is down")
        return JSONResponse({"error": "down"}, status_code=500)

    clock = Clock()
    handler = Handler(answer)
    app, backend = build(handler, clock, required_credits=1, **JWT)
    await credit_store(backend).set("alice", 10)
    caplog.set_level(logging.WARNING, logger="asgi_guard.cache")
    async with client(app) as c:
        before = await revalidations(c, "revalidation_failed")  # the counter is the process's
        await c.get("/page", headers=bearer())
        clock.now += 10
        await c.get("/page", headers=bearer())  # stale: served, the revalidation fails
        await settled(lambda: any("revalidation" in r.getMessage() for r in caplog.records))
        again = await c.get("/page", headers=bearer())  # still stale: served, and a new attempt
        assert again.json() == {"n": 0} and "stale-while-revalidate" in again.headers["cache-status"]
        await settled(lambda: len(handler.seen) == 3)
        await asyncio.sleep(0.05)
        assert await revalidations(c, "revalidation_failed") == before + 2
    message = next(r.getMessage() for r in caplog.records if "revalidation" in r.getMessage())
    assert "failed" in message and "the stale entry stays" in message
    assert ("RuntimeError" in message) == (failure == "raises")
    assert ("status 500" in message) == (failure == "answers 500")
    assert await credit_store(backend).balance("alice") == 9  # failures are not charged either


async def test_a_slow_revalidation_runs_once_per_key() -> None:
    clock = Clock()
    release = asyncio.Event()

    class Slow(Handler):
        async def __call__(self, request: Request) -> Response:
            if self.seen:
                await release.wait()
            return await super().__call__(request)

    handler = Slow()
    app, _ = build(handler, clock)
    async with client(app) as c:
        await c.get("/page")
        clock.now += 10
        answers = await asyncio.gather(*(c.get("/page") for _ in range(5)))
        assert all(a.json() == {"n": 0} for a in answers)
        await asyncio.sleep(0.05)
        release.set()
        await settled(lambda: len(handler.seen) == 2)
        await asyncio.sleep(0.05)
        assert (await c.get("/page")).json() == {"n": 1}
    assert len(handler.seen) == 2


async def test_revalidation_is_traced_as_its_own_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    clock, handler = Clock(), Handler()
    registry = RouteRegistry()
    job = JobConfig(endpoint_name="page", cache={"enabled": True}, tracing={"function_name": "render"})
    registry.register("/page", job, methods=["GET"])
    app = Starlette(routes=[Route("/page", handler.__call__)])
    runtime = GuardRuntime(settings(), MemoryBackend(clock=clock), tracer_provider=provider)
    install(app, registry, runtime=runtime)
    async with client(app) as c:
        await c.get("/page")
        clock.now += 10
        await c.get("/page", headers={"x-request-id": "trigger-2"})
        await settled(
            lambda: any(s.name.startswith("cache revalidate") for s in exporter.get_finished_spans())
        )
    spans = exporter.get_finished_spans()
    revalidate = next(s for s in spans if s.name == "cache revalidate page")
    attributes = dict(revalidate.attributes or {})
    assert attributes["asgi_guard.revalidates"] == "trigger-2"
    assert attributes["asgi_guard.cache.result"] == "revalidated"
    assert attributes["http.response.status_code"] == 200
    assert str(attributes["asgi_guard.request_id"]).startswith("revalidate-")
    jobs = [s for s in spans if s.name == "render"]
    assert len(jobs) == 2  # the miss and the revalidation
    assert any(s.parent is not None and s.parent.span_id == revalidate.context.span_id for s in jobs)
