"""A request leaves no reference cycle behind: everything it allocated is freed by reference counting.

Servers (uvicorn's RequestResponseCycle, hypercorn's streams) keep the scope on a per-request object
whose bound method is the ASGI `receive`. The guard keeps the context in the scope and the server's
`receive` in the context: a cycle per request, left to the cyclic GC. Under load its full collections
then stalled every request in flight (p99 141 ms against bare FastAPI's 5 ms at 300 req/s, measured
with benchmarks/fixed_rate.py). Each outcome below (hit, miss, rejections, the handler's own error,
a body read by the guard) is served with the collector off; the server object must die with it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from binding.bindkit import SECRET, token
from fastapi import FastAPI
from guardkit import UNCROSSED_WINDOW, http_scope
from starlette.types import Message

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.stages.credits import credit_store
from asgi_guard.state.memory import MemoryBackend


class ServerCycle:
    """What a server keeps per request: the scope, and `receive`/`send` as its own methods."""

    def __init__(self, scope: dict[str, Any], body: bytes) -> None:
        self.scope = scope
        self.body = body
        self.sent = False
        self.messages: list[Message] = []

    async def receive(self) -> Message:
        if self.sent:  # a server answers http.disconnect only once the client has gone
            await asyncio.Event().wait()
        self.sent = True
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    async def run(self, app: Any) -> int:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:  # the app's own 500 is re-raised for the server to log, as servers do
            pass
        return int(self.messages[0]["status"])


def scope_for(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return http_scope(method, path, headers, client=("127.0.0.1", 5000), server=("127.0.0.1", 8000))


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def build() -> Any:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"item_id": item_id}

    @app.post("/jobs/{resource_id}")
    async def job(resource_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"resource_id": resource_id, "payload": payload}

    @app.post("/parse")
    async def parse(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.get("/slow")
    async def slow() -> None:
        await asyncio.sleep(5)

    @app.post("/orders")
    async def order(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the handler failed")

    registry = RouteRegistry()
    registry.register(
        "/items/{item_id}",
        JobConfig(
            security={"auth_type_required": "jwt"},
            rate_limit={
                "enabled": True,
                "algo": "fixed_window",
                "fixed_window": {"limit": 3, "window": UNCROSSED_WINDOW},
            },
            cache={"enabled": True, "default": {"cache_ttl": 60}},
            tracing={"function_name": "item", "trace_label": "item"},
            metrics={"histogram_name": "cycles_item_seconds"},
        ),
        methods=["GET"],
    )
    registry.register(
        "/jobs/{resource_id}",
        JobConfig(security={"auth_type_required": "jwt"}, required_credits=1, redact_fields=["secret"]),
        methods=["POST"],
    )
    registry.register("/boom", JobConfig(circuit_breaker={"enabled": True}), methods=["GET"])
    registry.register("/parse", JobConfig(resource_id_from_body=True), methods=["POST"])
    registry.register("/slow", JobConfig(handler_timeout=0.01), methods=["GET"])
    registry.register(
        "/orders",
        JobConfig(
            security={"auth_type_required": "jwt", "user_permissions_required": ["orders:write"]},
            idempotency={"enabled": True},
            max_body_size=64,
        ),
        methods=["POST"],
    )
    backend = MemoryBackend()
    settings = GuardSettings(_env_file=None, jwt_secret=SECRET, metrics_path="/metrics")  # type: ignore[call-arg]
    install(app, registry, runtime=GuardRuntime(settings, backend))
    return app, backend


def auth(sub: str = "alice") -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token(sub)}".encode())]


JSON = [(b"content-type", b"application/json")]
SCOPED = [(b"authorization", f"Bearer {token('bob', scope='orders:write')}".encode())]
KEY = [(b"idempotency-key", b"order-1")]

# case: (method, path, headers, body, status); the same request is sent first `warm` times
# (start-up, the first fill, the limit spent) so the measured one is in the state the case names.
CASES = {
    "cache miss": ("GET", "/items/miss", auth("miss"), b"", 200, 0),
    "cache hit": ("GET", "/items/hit", auth("hit"), b"", 200, 1),
    "401 no token": ("GET", "/items/2", [], b"", 401, 1),
    "401 bad token": ("GET", "/items/2", [(b"authorization", b"Bearer x.y.z")], b"", 401, 1),
    "429 over the limit": ("GET", "/items/3", auth("hot"), b"", 429, 3),
    "402 no credits": ("POST", "/jobs/9", auth("poor") + JSON, b'{"a": 1}', 402, 1),
    "400 broken JSON read by the guard": ("POST", "/parse", JSON, b'{"resource_id": ', 400, 1),
    "200 body read by the guard": ("POST", "/jobs/9", auth("rich") + JSON, b'{"secret": "s"}', 200, 1),
    "500 from the handler": ("GET", "/boom", [], b"", 500, 1),
    "504 handler time-out": ("GET", "/slow", [], b"", 504, 1),
    "403 insufficient scope": ("POST", "/orders", auth("alice") + JSON, b"{}", 403, 1),
    "200 idempotent replay": ("POST", "/orders", SCOPED + KEY + JSON, b'{"n": 1}', 200, 1),
    "413 body too large": (
        "POST",
        "/orders",
        SCOPED + JSON + [(b"idempotency-key", b"order-2")],  # idempotency reads the body: bounded
        b"x" * 110,
        413,
        1,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_request_leaves_no_reference_cycle(case: str) -> None:
    app, backend = build()
    await credit_store(backend).set("rich", 100)
    method, path, headers, body, status, warm = CASES[case]
    await ServerCycle(scope_for("GET", "/items/start", []), b"").run(app)  # start-up
    for _ in range(warm):
        await ServerCycle(scope_for(method, path, list(headers)), body).run(app)
    with collector_off():
        cycle = ServerCycle(scope_for(method, path, list(headers)), body)
        assert await cycle.run(app) == status
        alive = weakref.ref(cycle)
        del cycle
        for _ in range(3):  # the loop finishes what the request cancelled (the disconnect watch)
            await asyncio.sleep(0)
        assert alive() is None, f"{case}: the request's objects are kept alive by a reference cycle"
        assert gc.collect() == 0, f"{case}: the request left cyclic garbage"


@pytest.mark.parametrize("freeze", [True, False])
async def test_gc_freeze_after_start_up_and_undone_at_shutdown(freeze: bool) -> None:
    """What is alive once the app has started is out of the cyclic GC's reach (its full collections
    would otherwise rescan the whole app while requests wait), and back in it after shutdown."""
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, str]:
        return {}

    registry = RouteRegistry()
    registry.register("/x", JobConfig(rate_limit={"enabled": True}))
    settings = GuardSettings(_env_file=None, gc_freeze=freeze)  # type: ignore[call-arg]
    install(app, registry, runtime=GuardRuntime(settings, MemoryBackend()))
    gc.unfreeze()
    events: list[int] = []

    async def receive() -> Message:
        if not events:
            events.append(gc.get_freeze_count())
            return {"type": "lifespan.startup"}
        await asyncio.sleep(0)
        events.append(gc.get_freeze_count())
        return {"type": "lifespan.shutdown"}

    async def send(message: Message) -> None:
        pass

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert events[0] == 0
    assert (events[1] > 0) is freeze  # frozen while serving (read when shutdown is asked)
    assert gc.get_freeze_count() == 0  # undone at shutdown


@pytest.mark.parametrize("body", [b"", b'{"secret": "s"}'])
async def test_a_server_answering_receive_at_once_forever_does_not_spin(body: bytes) -> None:
    """Not ASGI, but seen in hand-written test doubles: `receive()` answering http.request again and
    again, never blocking. The disconnect watch stopped only on http.disconnect, so it spun without
    yielding, queueing messages until the process ran out of memory (24 GiB, OOM-killed). It now
    stops watching at the second final body."""
    app, backend = build()
    await credit_store(backend).set("rich", 100)
    calls: list[int] = []

    async def receive() -> Message:
        calls.append(1)
        assert len(calls) < 1000, "the guard spins on receive()"
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    if body:
        scope = scope_for("POST", "/jobs/9", auth("rich") + JSON)
    else:
        scope = scope_for("GET", "/items/spin", auth("spin"))
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 200
    assert len(calls) < 10
