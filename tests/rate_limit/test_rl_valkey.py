"""The stage on a real valkey-server: headers, cluster, and a server that goes away and comes back."""

from __future__ import annotations

import asyncio

import pytest
from _rl_apps import limited_app
from prometheus_client import REGISTRY

from asgi_guard import GuardSettings

pytestmark = pytest.mark.valkey
FIXED_3 = {"algo": "fixed_window", "fixed_window": {"limit": 3, "window": 1_000_000_000}}


def faults() -> float:
    value = REGISTRY.get_sample_value(
        "asgi_guard_backend_faults_total", {"route": "items", "stage": "rate_limit"}
    )
    return value or 0.0


@pytest.mark.parametrize("where", ["standalone", "cluster"])
async def test_limits_and_headers_on_valkey(make_client, key_prefix, where, request) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("valkey_url" if where == "standalone" else "valkey_cluster_url")
    app = limited_app(
        {
            **FIXED_3,
            "limits": [
                {"algo": "sliding_window", "name": "minute", "sliding_window": {"limit": 10, "window": 60}}
            ],
        },
        GuardSettings(valkey_url=url, key_prefix=key_prefix),
    )
    client = make_client(app)
    responses = [await client.get("/items/7") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["ratelimit-policy"] == '"fixed_window";q=3;w=1000000000, "minute";q=10;w=60'
    assert responses[2].headers["ratelimit"].startswith('"fixed_window";r=0;')
    assert ', "minute";r=7;t=' in responses[2].headers["ratelimit"]
    assert ', "minute";r=7;t=' in responses[3].headers["ratelimit"]  # the rejected one took nothing
    assert responses[3].json()["policy"] == "fixed_window"
    assert (await client.get("/items/8")).status_code == 200  # another resource, another key


async def test_fail_closed_answers_503_then_recovers(make_client, own_valkey, key_prefix) -> None:  # type: ignore[no-untyped-def]
    # metrics are opt-in: collect them so the fault counter moves
    app = limited_app(FIXED_3, GuardSettings(valkey_url=own_valkey.url, key_prefix=key_prefix, metrics_collect=True))
    client = make_client(app)
    assert (await client.get("/items/1")).status_code == 200
    before = faults()
    own_valkey.nodes[0].stop()
    down = await asyncio.wait_for(client.get("/items/1"), timeout=5)
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["stage"] == "rate_limit"
    assert "retry-after" in down.headers
    assert faults() > before
    own_valkey.nodes[0].start()
    statuses = []
    for _ in range(20):  # the pool reconnects on its own; bounded, no sleeps needed beyond a beat
        response = await asyncio.wait_for(client.get("/items/2"), timeout=5)
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 200
    assert response.headers["ratelimit"].startswith('"fixed_window";r=2;')  # a fresh server, counting again


async def test_fail_open_lets_requests_through_and_counts_the_fault(
    make_client, own_valkey, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(
        {**FIXED_3, "fail_open": True},
        GuardSettings(valkey_url=own_valkey.url, key_prefix=key_prefix, metrics_collect=True),
    )
    client = make_client(app)
    assert (await client.get("/items/1")).status_code == 200
    before = faults()
    own_valkey.nodes[0].stop()
    responses = [await asyncio.wait_for(client.get("/items/1"), timeout=5) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5  # past the limit of 3: the limit is not enforced
    assert all("ratelimit" not in r.headers for r in responses)  # no quota to report
    assert faults() - before == 5
    own_valkey.nodes[0].start()
    statuses = []
    for _ in range(20):
        response = await asyncio.wait_for(client.get("/items/1"), timeout=5)
        statuses.append(response.status_code)
        if "ratelimit" in response.headers:
            break
        await asyncio.sleep(0.1)
    assert response.headers["ratelimit"].startswith('"fixed_window";r=2;')  # enforced again


async def test_a_slow_server_is_bounded_by_the_pooling_timeout(make_client, own_valkey, key_prefix) -> None:  # type: ignore[no-untyped-def]
    """A server that accepts but never answers (SIGSTOP) must give a 503, not a hang."""
    import os
    import signal

    app = limited_app(
        FIXED_3,
        GuardSettings(valkey_url=own_valkey.url, key_prefix=key_prefix),
        pooling={"socket_timeout": 0.2},
    )
    client = make_client(app)
    assert (await client.get("/items/1")).status_code == 200
    pid = own_valkey.nodes[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        response = await asyncio.wait_for(client.get("/items/1"), timeout=5)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert response.status_code == 503
