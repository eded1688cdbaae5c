"""Credits on a real Valkey: exact under concurrency from two OS processes, refunds on failure."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import PoolingConfig
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import ValkeyBackend

from ._helpers import client, guarded_app

BURST = Path(__file__).with_name("_burst.py")


async def test_hundred_concurrent_requests_two_processes_exactly_ten_succeed(
    valkey_url: str, key_prefix: str
) -> None:
    backend = ValkeyBackend(valkey_url, key_prefix=key_prefix)
    store = credit_store(backend)
    await store.set(Anonymous("127.0.0.1"), 10)
    start_at = time.time() + 2.0
    workers = [
        subprocess.Popen(
            [sys.executable, str(BURST), valkey_url, key_prefix, "50", str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    totals: dict[str, int] = {}
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        for status, count in json.loads(out.strip().splitlines()[-1]).items():
            totals[status] = totals.get(status, 0) + count
    assert totals == {"200": 10, "402": 90}
    assert await store.balance(Anonymous("127.0.0.1")) == 0
    await backend.close()


async def test_raising_handler_refunds_on_valkey(valkey_url: str, key_prefix: str) -> None:
    settings = GuardSettings(
        _env_file=None,  # type: ignore[call-arg]
        valkey_url=valkey_url,
        key_prefix=key_prefix,
        pooling=PoolingConfig(socket_timeout=3.0),
    )

    async def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    app = guarded_app(boom, JobConfig(endpoint_name="boom", required_credits=2), settings=settings)
    backend = ValkeyBackend(valkey_url, key_prefix=key_prefix)
    store = credit_store(backend)
    await store.set(Anonymous("127.0.0.1"), 3)
    async with client(app) as http:
        assert (await http.get("/job")).status_code == 500
        assert (await http.get("/job")).status_code == 500
    assert await store.balance(Anonymous("127.0.0.1")) == 3
    await backend.close()


async def test_backend_down_is_fast_503(own_valkey: object, key_prefix: str) -> None:
    url = own_valkey.url  # type: ignore[attr-defined]
    settings = GuardSettings(
        _env_file=None,  # type: ignore[call-arg]
        valkey_url=url,
        key_prefix=key_prefix,
        pooling=PoolingConfig(socket_timeout=0.5, connect_timeout=0.5),
    )

    async def ok(request: Request) -> Response:
        return Response("ok")

    app = guarded_app(ok, JobConfig(endpoint_name="down", required_credits=1), settings=settings)
    backend = ValkeyBackend(url, key_prefix=key_prefix)
    await credit_store(backend).set(Anonymous("127.0.0.1"), 3)
    await backend.close()
    async with client(app) as http:
        assert (await http.get("/job")).status_code == 200
        own_valkey.nodes[0].stop()  # type: ignore[attr-defined]
        down = await http.get("/job")
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["type"].endswith("backend-unavailable")
