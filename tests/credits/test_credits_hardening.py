"""Hardening (issue 13, cases 1 and 2): the handler time-out ends when the response is complete, and a
client that goes away before the response is complete is refunded (one after it is charged).

Case 1 runs in-process (the ASGI transport waits for the background task); case 2 needs a real server
that notices the closed socket: two uvicorn workers on loopback sharing a real valkey-server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guardkit import http_scope
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import CircuitBreakerConfig, IdempotencyConfig
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import MemoryBackend, backend_from_settings
from asgi_guard_dev.local import free_port

from ._helpers import client, guarded_app

USER = "127.0.0.1"
PAYER = Anonymous(USER)  # an anonymous client\'s balance is addressed by its address
HERE = Path(__file__).resolve().parent


def _route(**extra: object) -> JobConfig:
    return JobConfig(
        endpoint_name="bg",
        required_credits=1,
        handler_timeout=0.3,
        circuit_breaker=CircuitBreakerConfig(enabled=True, circuit_breaker_threshold=2),
        idempotency=IdempotencyConfig(enabled=True),
        **extra,  # type: ignore[arg-type]
    )


async def test_background_work_after_the_response_is_not_timed_out_refunded_or_a_failure() -> None:
    backend = MemoryBackend()
    store = credit_store(backend)
    await store.set(PAYER, 10)
    finished: list[int] = []
    calls: list[int] = []

    async def after() -> None:
        await asyncio.sleep(0.6)  # twice the handler time-out, after the response is complete
        finished.append(1)

    async def handler(request: Request) -> Response:
        calls.append(1)
        return JSONResponse({"ok": True}, background=BackgroundTask(after))

    app = guarded_app(handler, _route(), backend=backend, methods=("POST",))
    async with client(app) as http:
        statuses = [
            (await http.post("/job", headers={"idempotency-key": f"k{i}"})).status_code for i in range(3)
        ]
        again = await http.post("/job", headers={"idempotency-key": "k0"})
    assert statuses == [200, 200, 200], "the breaker must not count background work as a failure"
    assert len(finished) == 3, "background tasks run to completion"
    assert await store.balance(PAYER) == 7, "three completed responses are three charges"
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
    assert len(calls) == 3, "the idempotent retry replays instead of running the handler again"


async def test_handler_timeout_applies_without_credits_or_breaker() -> None:
    """Every route with handler_timeout gets it (it used to need credits or a breaker)."""

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({})

    config = JobConfig(endpoint_name="slow", handler_timeout=0.1)
    async with client(guarded_app(slow, config)) as http:
        started = time.monotonic()
        response = await http.get("/job")
    assert response.status_code == 504
    assert response.json()["type"].endswith("handler-timeout")
    assert time.monotonic() - started < 1.5


async def test_timeout_before_the_response_refunds_and_counts_for_the_breaker() -> None:
    backend = MemoryBackend()
    store = credit_store(backend)
    await store.set(PAYER, 10)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({})

    config = JobConfig(
        endpoint_name="slow2",
        required_credits=1,
        handler_timeout=0.1,
        circuit_breaker=CircuitBreakerConfig(enabled=True, circuit_breaker_threshold=2),
    )
    async with client(guarded_app(slow, config, backend=backend)) as http:
        statuses = [(await http.get("/job")).status_code for _ in range(3)]
    assert statuses == [504, 504, 503]
    assert await store.balance(PAYER) == 10


def test_credits_does_not_import_the_breaker_stage() -> None:
    source = (Path(__file__).resolve().parents[2] / "asgi_guard/stages/credits/stage.py").read_text()
    assert "stages.circuit_breaker" not in source


# -- case 2: real server, real sockets ------------------------------------------------------------


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def _raw_request(port: int, path: str, close_after: float | None, reset: bool = False) -> bytes:
    """A GET on a raw socket; with `close_after`, the socket closes before the answer (with a FIN,
    as a client that gives up does, or with `reset` an RST, as a killed one does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        if close_after is not None:
            time.sleep(close_after)
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return b""
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.fixture
def uvicorn_app(valkey_url: str, key_prefix: str):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}",
        "HARDEN_VALKEY": valkey_url,
        "HARDEN_PREFIX": key_prefix,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_disconnect_app:app",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
    )
    try:
        _wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_disconnect_before_the_response_refunds_after_it_charges(
    uvicorn_app: int, valkey_url: str, key_prefix: str
) -> None:
    settings = GuardSettings(valkey_url=valkey_url, key_prefix=key_prefix, _env_file=None)  # type: ignore[call-arg]
    backend = backend_from_settings(settings)
    store = credit_store(backend)
    await store.set(PAYER, 100)
    try:
        loop = asyncio.get_running_loop()
        # 20 clients close their sockets (10 FIN, 10 RST) 150 ms into a 600 ms handler: none is charged.
        await asyncio.gather(
            *(
                loop.run_in_executor(None, _raw_request, uvicorn_app, "/slow", 0.15, i % 2 == 0)
                for i in range(20)
            )
        )
        await asyncio.sleep(1.5)  # every handler has long finished (or been cancelled)
        assert await store.balance(PAYER) == 100
        # 5 clients that wait for their answer are charged, one credit each.
        answers = await asyncio.gather(
            *(loop.run_in_executor(None, _raw_request, uvicorn_app, "/slow", None) for _ in range(5))
        )
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
        assert await store.balance(PAYER) == 95
    finally:
        await backend.close()


async def test_a_client_gone_before_the_answer_is_refunded_and_its_idempotency_key_released() -> None:
    """The handler is cancelled, so no answer is stored for replay: the retry runs and is charged
    (a stored answer replayed for free after a refund would be a way around paying)."""
    backend = MemoryBackend()
    store = credit_store(backend)
    await store.set(PAYER, 10)
    runs: list[int] = []

    async def slow(request: Request) -> Response:
        runs.append(1)
        await asyncio.sleep(0.3)
        return JSONResponse({"ok": True})

    config = JobConfig(endpoint_name="gone", required_credits=1, idempotency=IdempotencyConfig(enabled=True))
    app = guarded_app(slow, config, backend=backend, methods=("POST",))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/job",
        "raw_path": b"/job",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"idempotency-key", b"k1"), (b"host", b"t")],
        "client": (USER, 1),
        "server": ("t", 80),
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.05)  # the client closes its socket 50 ms in
        return {"type": "http.disconnect"}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent == [] and await store.balance(PAYER) == 10
    async with client(app) as http:
        retry = await http.post("/job", headers={"idempotency-key": "k1"})
    assert retry.status_code == 200 and "idempotent-replayed" not in retry.headers
    assert len(runs) == 2 and await store.balance(PAYER) == 9


async def test_a_slow_send_of_the_final_body_is_not_the_handlers_time() -> None:
    """The handler answers at once; handing its final body on then takes longer than the time-out
    (a client reading slowly, or an outer stage storing the response on a stalled backend: the chaos
    run saw 200s refunded so). The answer was whole when it was handed on: charged, not a 504."""
    backend = MemoryBackend()
    store = credit_store(backend)
    await store.set(PAYER, 10)

    async def quick(request: Request) -> Response:
        return JSONResponse({"ok": True})

    config = JobConfig(endpoint_name="quick", required_credits=1, handler_timeout=0.1)
    app = guarded_app(quick, config, backend=backend)
    sent: list[dict[str, object]] = []
    asked: list[int] = []

    async def receive() -> dict[str, object]:
        asked.append(1)
        if len(asked) > 1:  # a server answers the next receive() only when the client leaves
            await asyncio.Event().wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def slow_send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await asyncio.sleep(0.4)  # four time-outs long
        sent.append(message)

    scope = http_scope("GET", "/job", client=(USER, 5000), server=("127.0.0.1", 8000))
    await app(scope, receive, slow_send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200
    assert await store.balance(PAYER) == 9
