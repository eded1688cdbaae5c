"""Idempotency-Key as a client sees it, on memory and on real Valkey (standalone and 3-node cluster)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from idem_helpers import Orders, guard, idempotent
from prometheus_client import REGISTRY
from starlette.routing import Route

import asgi_guard.stack
from asgi_guard.config import CacheConfig, PoolingConfig
from asgi_guard.core.problems import Problem, send_problem
from asgi_guard.core.stage import Stage
from asgi_guard.stages import STAGES
from asgi_guard.stages.cache import CachedResponse
from asgi_guard.stages.idempotency import MemoryIdempotencyStore
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend
from asgi_guard_dev.valkey import ValkeyDeployment


def orders_app(backend: Backend, handler: Orders, key_prefix: str, **options: Any) -> Any:
    return guard(
        backend,
        [
            Route("/orders", handler.endpoint, methods=["POST"]),
            Route("/orders/{n}", handler.endpoint, methods=["PUT"]),
        ],
        {"/orders": idempotent(**options), "/orders/{n}": idempotent("order", **options)},
        key_prefix,
    )


async def test_replay(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Orders()
    client = make_client(orders_app(backend, handler, key_prefix))
    first = await client.post("/orders", content=b'{"item": 1}', headers={"idempotency-key": "k-1"})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await client.post("/orders", content=b'{"item": 1}', headers={"idempotency-key": "k-1"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() == {"call": 1, "path": "/orders", "body": '{"item": 1}'}
    assert again.headers["location"] == "/orders/1"
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert handler.calls == 1
    other = await client.post("/orders", content=b'{"item": 1}', headers={"idempotency-key": "k-2"})
    assert other.json()["call"] == 2 and "idempotent-replayed" not in other.headers


async def test_reuse_with_another_request_is_422(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Orders()
    client = make_client(orders_app(backend, handler, key_prefix))
    await client.post("/orders", content=b"a", headers={"idempotency-key": "k"})
    changed = await client.post("/orders", content=b"b", headers={"idempotency-key": "k"})
    assert changed.status_code == 422 and changed.headers["content-type"] == "application/problem+json"
    assert changed.json()["type"].endswith("idempotency-key-reused") and changed.json()["request_id"]
    query = await client.post("/orders?x=1", content=b"a", headers={"idempotency-key": "k"})
    assert query.status_code == 422
    await client.put("/orders/1", content=b"a", headers={"idempotency-key": "p"})
    assert (await client.put("/orders/2", content=b"a", headers={"idempotency-key": "p"})).status_code == 422
    assert handler.calls == 2


async def test_in_flight_is_409(backend: Backend, make_client: Any, key_prefix: str) -> None:
    gate = asyncio.Event()
    handler = Orders(gate=gate)
    client = make_client(orders_app(backend, handler, key_prefix))
    first = asyncio.create_task(client.post("/orders", content=b"x", headers={"idempotency-key": "slow"}))
    await asyncio.wait_for(handler.started.wait(), 5)
    busy = await client.post("/orders", content=b"x", headers={"idempotency-key": "slow"})
    assert busy.status_code == 409 and int(busy.headers["retry-after"]) >= 1
    assert busy.json()["type"].endswith("idempotency-key-in-use")
    gate.set()
    assert (await first).status_code == 201
    replay = await client.post("/orders", content=b"x", headers={"idempotency-key": "slow"})
    assert replay.headers["idempotent-replayed"] == "true" and handler.calls == 1


async def test_server_errors_release_the_key(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Orders(503, 500, 400)
    client = make_client(orders_app(backend, handler, key_prefix))
    headers = {"idempotency-key": "retry-me"}
    assert (await client.post("/orders", content=b"x", headers=headers)).status_code == 503
    assert (await client.post("/orders", content=b"x", headers=headers)).status_code == 500
    rejected = await client.post("/orders", content=b"x", headers=headers)
    assert rejected.status_code == 400 and "idempotent-replayed" not in rejected.headers
    # a 4xx from the handler is a final answer: it is replayed, not re-run
    replay = await client.post("/orders", content=b"x", headers=headers)
    assert replay.status_code == 400 and replay.headers["idempotent-replayed"] == "true"
    assert handler.calls == 3


async def test_exception_releases_the_key(backend: Backend, make_client: Any, key_prefix: str) -> None:
    handler = Orders(fail_first=True)
    client = make_client(orders_app(backend, handler, key_prefix))
    with pytest.raises(RuntimeError):
        await client.post("/orders", content=b"x", headers={"idempotency-key": "crash"})
    retry = await client.post("/orders", content=b"x", headers={"idempotency-key": "crash"})
    assert retry.status_code == 201 and retry.json()["call"] == 2


async def test_keys_are_scoped_per_user_and_route(
    backend: Backend, make_client: Any, key_prefix: str, fake_auth: None
) -> None:
    handler = Orders()
    client = make_client(orders_app(backend, handler, key_prefix))
    for user in ("ann", "bob"):
        response = await client.post(
            "/orders", content=b"x", headers={"idempotency-key": "k", "x-user": user}
        )
        assert response.status_code == 201 and "idempotent-replayed" not in response.headers
    other_route = await client.put(
        "/orders/9", content=b"x", headers={"idempotency-key": "k", "x-user": "ann"}
    )
    assert other_route.status_code == 201 and "idempotent-replayed" not in other_route.headers
    same = await client.post("/orders", content=b"x", headers={"idempotency-key": "k", "x-user": "bob"})
    assert same.headers["idempotent-replayed"] == "true" and same.json()["call"] == 2
    assert handler.calls == 3


@pytest.mark.parametrize(
    "headers",
    [
        [("idempotency-key", "k" * 256)],
        [("idempotency-key", "")],
        [("idempotency-key", '""')],
        [("idempotency-key", "a"), ("idempotency-key", "b")],
        [("idempotency-key", "caf\u00e9")],
    ],
)
async def test_bad_keys_are_400(make_client: Any, headers: list[tuple[str, str]]) -> None:
    handler = Orders()
    client = make_client(orders_app(MemoryBackend(), handler, "ag"))
    encoded = [(k.encode(), v.encode()) for k, v in headers]
    response = await client.post("/orders", content=b"x", headers=encoded)
    assert response.status_code == 400 and response.json()["type"].endswith("invalid-idempotency-key")
    assert handler.calls == 0


async def test_longest_key_and_quoted_form(make_client: Any) -> None:
    handler = Orders()
    client = make_client(orders_app(MemoryBackend(), handler, "ag", max_key_length=8))
    assert (
        await client.post("/orders", content=b"x", headers={"idempotency-key": "12345678"})
    ).status_code == 201
    quoted = await client.post("/orders", content=b"x", headers={"idempotency-key": '"12345678"'})
    assert quoted.headers["idempotent-replayed"] == "true"
    assert (
        await client.post("/orders", content=b"x", headers={"idempotency-key": "123456789"})
    ).status_code == 400


async def test_without_a_key(make_client: Any) -> None:
    handler = Orders()
    optional = make_client(orders_app(MemoryBackend(), handler, "ag"))
    assert (await optional.post("/orders", content=b"x")).status_code == 201
    assert (await optional.post("/orders", content=b"x")).json()["call"] == 2
    required = make_client(orders_app(MemoryBackend(), handler, "ag", required=True))
    missing = await required.post("/orders", content=b"x")
    assert missing.status_code == 400 and handler.calls == 2


async def test_lock_expires_for_a_crashed_first_attempt() -> None:
    class Clock:
        now = 100.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    store = MemoryIdempotencyStore(MemoryBackend(clock=clock))
    assert (await store.claim("r", "fp", "owner-1", lock_ttl=60)).state == "new"
    assert (await store.claim("r", "fp", "owner-2", lock_ttl=60)).state == "running"
    clock.now += 61  # owner-1's process died: its claim lapses
    assert (await store.claim("r", "fp", "owner-2", lock_ttl=60)).state == "new"
    response = CachedResponse(201, (), b"late")
    assert not await store.finish("r", "owner-1", response, ttl=10)  # the old owner cannot overwrite
    assert await store.finish("r", "owner-2", CachedResponse(201, (), b"ok"), ttl=10)
    done = await store.claim("r", "fp", "owner-3", lock_ttl=60)
    assert done.state == "done" and done.response is not None and done.response.body == b"ok"
    assert not await store.release("r", "owner-2")  # a finished record is not released


def _faults() -> float:
    labels = {"route": "orders", "stage": "idempotency"}
    return REGISTRY.get_sample_value("asgi_guard_backend_faults_total", labels) or 0.0


async def test_store_down(own_valkey: ValkeyDeployment, make_client: Any, key_prefix: str) -> None:
    pooling = PoolingConfig(socket_timeout=0.2, connect_timeout=0.2)
    closed_backend = ValkeyBackend(own_valkey.url, pooling, key_prefix)
    open_backend = ValkeyBackend(own_valkey.url, pooling, key_prefix + "o")
    handler = Orders()
    closed = make_client(orders_app(closed_backend, handler, key_prefix))
    fail_open = make_client(orders_app(open_backend, handler, key_prefix + "o", fail_open=True))
    assert (await closed.post("/orders", content=b"x", headers={"idempotency-key": "k"})).status_code == 201
    before = _faults()
    own_valkey.nodes[0].stop()
    try:
        refused = await closed.post("/orders", content=b"x", headers={"idempotency-key": "k"})
        assert refused.status_code == 503 and refused.json()["stage"] == "idempotency"
        assert "retry-after" in refused.headers
        ran = await fail_open.post("/orders", content=b"x", headers={"idempotency-key": "k"})
        assert ran.status_code == 201 and ran.json()["call"] == 2
        assert _faults() >= before + 2
    finally:
        own_valkey.nodes[0].start()
        await closed_backend.close()
        await open_backend.close()


def _worker(url: str, prefix: str, key: str, body: str) -> dict[str, Any]:
    script = Path(__file__).with_name("idem_worker.py")
    done = subprocess.run(
        [sys.executable, str(script), url, prefix, key, body], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_replay_across_two_processes(valkey_url: str, key_prefix: str) -> None:
    first = await asyncio.to_thread(_worker, valkey_url, key_prefix, "cross", "order-1")
    second = await asyncio.to_thread(_worker, valkey_url, key_prefix, "cross", "order-1")
    changed = await asyncio.to_thread(_worker, valkey_url, key_prefix, "cross", "order-2")
    assert first["status"] == 201 and first["replayed"] is None and first["json"]["pid"] == first["pid"]
    assert second["pid"] != first["pid"]
    assert second["status"] == 201 and second["replayed"] == "true"
    assert second["json"] == first["json"]  # the body the first process produced: no second run
    assert changed["status"] == 422


class ShortOfCredits(Stage):
    """An inner stage that rejects by sending its own problem (as a credits stage might, with 402)."""

    name = "short_of_credits"
    calls = 0

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            scope["asgi_guard"].decide(self.name, "rejected", "insufficient_credits")
            await send_problem(send, Problem(402, "insufficient-credits", "Payment Required"))
            return
        await self.app(scope, receive, send)


async def test_inner_rejection_is_not_replayed(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_guard.stack, "STAGES", (*STAGES, ShortOfCredits))
    handler = Orders()
    client = make_client(orders_app(MemoryBackend(), handler, "ag"))
    short = await client.post("/orders", content=b"x", headers={"idempotency-key": "pay"})
    assert short.status_code == 402
    paid = await client.post("/orders", content=b"x", headers={"idempotency-key": "pay"})
    assert paid.status_code == 201 and "idempotent-replayed" not in paid.headers
    replay = await client.post("/orders", content=b"x", headers={"idempotency-key": "pay"})
    assert replay.headers["idempotent-replayed"] == "true" and ShortOfCredits.calls == 2
    assert handler.calls == 1


async def test_with_the_cache_inside(make_client: Any) -> None:
    """Idempotency (stage 4) wraps the cache (stage 5): a replay carries no stale cache headers."""
    handler = Orders(200, 200)
    config = idempotent().model_copy(update={"cache": CacheConfig(enabled=True, methods=["POST"])})
    client = make_client(
        guard(MemoryBackend(), [Route("/orders", handler.endpoint, methods=["POST"])], {"/orders": config})
    )
    first = await client.post("/orders", content=b"x", headers={"idempotency-key": "a"})
    hit = await client.post("/orders", content=b"x", headers={"idempotency-key": "b"})
    assert first.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT" and handler.calls == 1
    replay = await client.post("/orders", content=b"x", headers={"idempotency-key": "b"})
    assert replay.headers["idempotent-replayed"] == "true" and "x-cache" not in replay.headers
    assert "age" not in replay.headers and replay.json() == first.json()
