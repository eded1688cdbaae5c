"""The circuit breaker with its state in a real Valkey: shared by processes, standalone and cluster."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import CircuitBreakerConfig, PoolingConfig
from asgi_guard.state import ValkeyBackend

from ._helpers import Clock, client, guarded_app

WORKER = Path(__file__).with_name("_fail.py")


def settings_for(url: str, prefix: str, **pooling: float) -> GuardSettings:
    return GuardSettings(
        _env_file=None,  # type: ignore[call-arg]
        valkey_url=url,
        key_prefix=prefix,
        pooling=PoolingConfig(**{"socket_timeout": 3.0, **pooling}),
    )


def config_for(label: str, **options: object) -> JobConfig:
    policy = {"enabled": True, "circuit_breaker_threshold": 3, "circuit_breaker_timeout": 1, **options}
    return JobConfig(endpoint_name=label, circuit_breaker=CircuitBreakerConfig(**policy))


class Counter:
    def __init__(self, status: int = 200) -> None:
        self.calls = 0
        self.status = status

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        return PlainTextResponse("ok", status_code=self.status)


async def test_state_is_shared_across_processes(valkey_url: str, key_prefix: str) -> None:
    label = f"shared-{uuid.uuid4().hex[:6]}"
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), valkey_url, key_prefix, label, "4", "2.5", stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(worker.communicate(), 60)
    assert json.loads(out.decode().strip().splitlines()[-1]) == [500, 500, 500, 503]

    healthy = Counter()
    config = config_for(label, circuit_breaker_timeout=2.5)
    app = guarded_app(healthy.handle, config, settings=settings_for(valkey_url, key_prefix))
    async with client(app) as http:
        rejected = await http.get("/job")
        assert rejected.status_code == 503, "this process never failed, yet sees the circuit open"
        assert rejected.json()["type"].endswith("circuit-open")
        assert 1 <= int(rejected.headers["retry-after"]) <= 3
        assert healthy.calls == 0
        await asyncio.sleep(int(rejected.headers["retry-after"]) + 0.1)
        assert (await http.get("/job")).status_code == 200, "the trial call succeeds and closes it"
        assert (await http.get("/job")).status_code == 200
    assert healthy.calls == 2


@pytest.mark.parametrize("where", ["valkey_url", "valkey_cluster_url"])
async def test_opens_and_closes_on_valkey(
    where: str, request: pytest.FixtureRequest, key_prefix: str
) -> None:
    url = request.getfixturevalue(where)
    handler = Counter(status=500)
    clock = Clock()  # the script reads this clock instead of the server's TIME: no sleeping
    backend = ValkeyBackend(url, PoolingConfig(socket_timeout=3.0), key_prefix, clock=clock, gc_slack=3600)
    config = config_for(f"oc-{uuid.uuid4().hex[:6]}", circuit_breaker_timeout=0.3)
    async with client(guarded_app(handler.handle, config, backend=backend)) as http:
        assert [(await http.get("/job")).status_code for _ in range(4)] == [500, 500, 500, 503]
        assert handler.calls == 3
        clock.now += 0.4
        assert (await http.get("/job")).status_code == 500, "the trial fails"
        assert (await http.get("/job")).status_code == 503, "and re-opens the circuit"
        handler.status = 200
        clock.now += 0.4
        assert (await http.get("/job")).status_code == 200
        assert (await http.get("/job")).status_code == 200
    await backend.close()
    assert handler.calls == 6


async def test_half_open_admits_one_trial_across_instances(valkey_url: str, key_prefix: str) -> None:
    label = f"trial-{uuid.uuid4().hex[:6]}"
    gate = asyncio.Event()
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return PlainTextResponse("down", status_code=500)
        await gate.wait()
        return PlainTextResponse("up")

    config = config_for(label, circuit_breaker_threshold=2, circuit_breaker_timeout=0.3)
    clock = Clock()
    backends = [ValkeyBackend(valkey_url, None, key_prefix, clock=clock, gc_slack=3600) for _ in "ab"]
    first = guarded_app(handler, config, backend=backends[0])
    second = guarded_app(handler, config, backend=backends[1])
    async with client(first) as a, client(second) as b:
        await a.get("/job")
        await a.get("/job")
        clock.now += 0.4
        trial = asyncio.create_task(a.get("/job"))
        for _ in range(400):
            if calls == 3:
                break
            await asyncio.sleep(0.005)
        others = [(await b.get("/job")).status_code, (await a.get("/job")).status_code]
        gate.set()
        assert (await trial).status_code == 200
        assert (await b.get("/job")).status_code == 200
    for backend in backends:
        await backend.close()
    assert others == [503, 503]


async def test_backend_down_fails_open_or_closed_as_configured(own_valkey: object, key_prefix: str) -> None:
    url = own_valkey.url  # type: ignore[attr-defined]
    settings = settings_for(url, key_prefix, socket_timeout=0.3, connect_timeout=0.3)
    handler = Counter()
    open_app = guarded_app(handler.handle, config_for("fo-open"), settings=settings)
    closed_app = guarded_app(handler.handle, config_for("fo-closed", fail_open=False), settings=settings)
    async with client(open_app) as fail_open, client(closed_app) as fail_closed:
        assert (await fail_open.get("/job")).status_code == 200
        assert (await fail_closed.get("/job")).status_code == 200
        own_valkey.nodes[0].stop()  # type: ignore[attr-defined]
        assert (await fail_open.get("/job")).status_code == 200
        refused = await fail_closed.get("/job")
    assert refused.status_code == 503 and refused.json()["type"].endswith("backend-unavailable")
    assert handler.calls == 3
