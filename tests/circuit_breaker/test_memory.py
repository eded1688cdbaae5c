"""The circuit breaker on the embedded backend: open, half-open trial, close, and safe retries."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from asgi_guard import JobConfig
from asgi_guard.config import CircuitBreakerConfig
from asgi_guard.state import MemoryBackend

from ._helpers import Clock, client, guarded_app


def breaker_config(**options: object) -> JobConfig:
    policy = {"enabled": True, "circuit_breaker_threshold": 3, "circuit_breaker_timeout": 0.3, **options}
    return JobConfig(
        endpoint_name=f"cb-{uuid.uuid4().hex[:8]}", circuit_breaker=CircuitBreakerConfig(**policy)
    )


class Flaky:
    """A handler whose answers the test scripts: a status, or "raise"."""

    def __init__(self, *script: int | str, then: int | str = 200) -> None:
        self.script = list(script)
        self.then = then
        self.calls = 0
        self.methods: list[str] = []

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        self.methods.append(request.method)
        await request.body()
        outcome = self.script.pop(0) if self.script else self.then
        if outcome == "raise":
            raise RuntimeError("dependency down")
        return PlainTextResponse(f"attempt {self.calls}", status_code=int(outcome))


def endpoint(handler: object) -> object:
    return handler.handle if isinstance(handler, Flaky) else handler


def state(label: str) -> float | None:
    return REGISTRY.get_sample_value("asgi_guard_circuit_state", {"route": label})


async def test_opens_after_threshold_then_closes_after_timeout(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="asgi_guard.circuit_breaker")
    handler = Flaky(500, "raise", 503)
    config = breaker_config()
    label = config.endpoint_name or ""
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend(clock=clock))) as http:
        assert [(await http.get("/job")).status_code for _ in range(3)] == [500, 500, 503]
        assert state(label) == 2
        rejected = await http.get("/job")
        assert rejected.status_code == 503
        assert rejected.headers["content-type"] == "application/problem+json"
        assert rejected.json()["type"].endswith("circuit-open")
        assert int(rejected.headers["retry-after"]) >= 1
        assert handler.calls == 3, "an open circuit does not call the handler"
        clock.now += 0.35  # the injected clock: no sleeping
        trial = await http.get("/job")
        assert trial.status_code == 200 and handler.calls == 4
        assert state(label) == 0
        assert (await http.get("/job")).status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "asgi_guard.circuit_breaker"]
    assert any("closed -> open" in m for m in messages)
    assert any("open -> half-open" in m for m in messages)
    assert any("half-open -> closed" in m for m in messages)
    assert (
        REGISTRY.get_sample_value("asgi_guard_circuit_transitions_total", {"route": label, "state": "open"})
        == 1
    )


async def test_failed_trial_reopens() -> None:
    clock = Clock()
    handler = Flaky(500, 500, 500, 500, then=200)
    config = breaker_config()
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend(clock=clock))) as http:
        for _ in range(3):
            await http.get("/job")
        clock.now += 0.35  # the injected clock: no sleeping
        assert (await http.get("/job")).status_code == 500, "the trial runs and fails"
        assert (await http.get("/job")).status_code == 503, "and the circuit is open again"
        assert handler.calls == 4


async def test_half_open_admits_one_trial() -> None:
    clock = Clock()
    gate = asyncio.Event()
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return PlainTextResponse("down", status_code=500)
        await gate.wait()
        return PlainTextResponse("up")

    config = breaker_config(circuit_breaker_threshold=2)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend(clock=clock))) as http:
        await http.get("/job")
        await http.get("/job")
        clock.now += 0.35  # the injected clock: no sleeping
        trial = asyncio.create_task(http.get("/job"))
        for _ in range(200):
            if calls == 3:
                break
            await asyncio.sleep(0.005)
        others = [await http.get("/job") for _ in range(3)]
        gate.set()
        assert (await trial).status_code == 200
    assert [r.status_code for r in others] == [503, 503, 503]
    assert calls == 3


async def test_client_errors_are_not_failures() -> None:
    handler = Flaky(404, 422, 400, 404, then=200)
    async with client(guarded_app(endpoint(handler), breaker_config(), backend=MemoryBackend())) as http:
        assert [(await http.get("/job")).status_code for _ in range(5)] == [404, 422, 400, 404, 200]


async def test_success_resets_consecutive_failures() -> None:
    handler = Flaky(500, 500, 200, 500, 500, then=200)
    async with client(guarded_app(endpoint(handler), breaker_config(), backend=MemoryBackend())) as http:
        assert [(await http.get("/job")).status_code for _ in range(6)] == [500, 500, 200, 500, 500, 200]


async def test_timeouts_are_failures_and_answer_504() -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(30)
        return PlainTextResponse("late")

    config = breaker_config(circuit_breaker_threshold=2).model_copy(update={"handler_timeout": 0.05})
    async with client(guarded_app(slow, config, backend=MemoryBackend())) as http:
        first, second, third = [await http.get("/job") for _ in range(3)]
    assert first.status_code == second.status_code == 504
    assert first.json()["type"].endswith("handler-timeout")
    assert third.status_code == 503 and third.json()["type"].endswith("circuit-open")


async def test_get_is_retried_until_success() -> None:
    handler = Flaky(500, "raise", then=200)
    config = breaker_config(max_retries=2, retry_backoff=0.0, circuit_breaker_threshold=5)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend())) as http:
        response = await http.get("/job")
    assert response.status_code == 200 and response.text == "attempt 3"
    assert handler.calls == 3


async def test_retries_give_up_with_the_last_failure() -> None:
    handler = Flaky(then=502)
    config = breaker_config(max_retries=2, retry_backoff=0.0, circuit_breaker_threshold=10)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend())) as http:
        response = await http.get("/job")
    assert response.status_code == 502 and response.text == "attempt 3"
    assert handler.calls == 3


async def test_plain_post_is_never_retried() -> None:
    handler = Flaky(500, then=200)
    config = breaker_config(max_retries=3, retry_backoff=0.0)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend())) as http:
        response = await http.post("/job", content=b"charge me once")
    assert response.status_code == 500 and handler.calls == 1


async def test_post_with_idempotency_key_is_retried_with_its_body() -> None:
    bodies: list[bytes] = []

    async def handler(request: Request) -> Response:
        bodies.append(await request.body())
        if len(bodies) < 3:
            return PlainTextResponse("down", status_code=503)
        return PlainTextResponse("created", status_code=201)

    config = breaker_config(max_retries=2, retry_backoff=0.0)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend())) as http:
        response = await http.post("/job", content=b'{"n": 1}', headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    assert bodies == [b'{"n": 1}'] * 3


async def test_no_retry_once_the_response_started() -> None:
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1

        async def chunks():  # type: ignore[no-untyped-def]
            yield b"partial"
            raise RuntimeError("broke mid-stream")

        return StreamingResponse(chunks())

    config = breaker_config(max_retries=3, retry_backoff=0.0)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend())) as http:
        response = await http.get("/job")
    assert response.status_code == 200 and calls == 1


async def test_retries_stop_when_the_circuit_opens() -> None:
    handler = Flaky(then=500)
    config = breaker_config(max_retries=5, retry_backoff=0.0, circuit_breaker_threshold=2)
    async with client(guarded_app(endpoint(handler), config, backend=MemoryBackend())) as http:
        first = await http.get("/job")
        second = await http.get("/job")
    assert first.status_code == 500 and handler.calls == 2, "two failures opened it: no third attempt"
    assert second.status_code == 503
