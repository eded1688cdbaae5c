"""Cost per request through the stage: every source, all-or-nothing, and client garbage is a 400.

The attack tests come first: a client that sends a negative, fractional, huge or non-numeric cost,
or forges the upstream's cost header, must neither crash the stack (500) nor lower its own cost.
"""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
from _rl_apps import limited_app

from asgi_guard import GuardSettings
from asgi_guard.state import MemoryBackend

T0 = 1_800_000_000.0
SLOW_BUCKET = {"algo": "token_bucket", "token_bucket": {"rate_limit": 10, "refill_rate": 0.0001}}
BODY_COST = {**SLOW_BUCKET, "cost": {"source": "body", "name": "units"}}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def memory_app(rate_limit: dict, settings: GuardSettings | None = None):  # type: ignore[no-untyped-def]
    return limited_app(rate_limit, settings, backend=MemoryBackend(clock=Clock()), path="/items")


@pytest.mark.parametrize(
    "body",
    [
        b'{"units": -1}',
        b'{"units": 1.5}',
        b'{"units": "ten"}',
        b'{"units": true}',
        b'{"units": 1e300}',
        b'{"units": [1]}',
        b'{"units": 99999999999999999999}',
        b'{"units": "\\u0661"}',
        b"{not json",
    ],
)
async def test_garbage_cost_is_a_400_and_takes_nothing(make_client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    client = make_client(memory_app(BODY_COST))
    bad = await client.post("/items", content=body)
    assert bad.status_code == 400, bad.text
    assert bad.headers["content-type"] == "application/problem+json"
    good = await client.post("/items", json={"units": 10})
    assert good.status_code == 200  # the whole bucket was still there


async def test_missing_cost_without_default_is_a_400_with_default_is_the_default(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(memory_app(BODY_COST))
    missing = await client.post("/items", json={})
    assert missing.status_code == 400
    assert missing.json()["type"].endswith("missing-cost")
    with_default = make_client(
        memory_app({**SLOW_BUCKET, "cost": {"source": "body", "name": "units", "default": 4}})
    )
    response = await with_default.post("/items", json={})
    assert response.headers["ratelimit"] == '"token_bucket";r=6;t=10000'


async def test_body_cost_consumes_the_bucket_all_or_nothing_memory(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(memory_app(BODY_COST))
    first = await client.post("/items", json={"units": 7})
    assert first.status_code == 200
    assert first.headers["ratelimit"].startswith('"token_bucket";r=3;')
    too_much = await client.post("/items", json={"units": 5})
    assert too_much.status_code == 429
    assert too_much.json()["cost"] == 5
    never = await client.post("/items", json={"units": 11})
    assert "more than policy 'token_bucket'" in never.json()["detail"]
    assert too_much.headers["ratelimit"].startswith('"token_bucket";r=3;')  # nothing taken
    rest = await client.post("/items", json={"units": 3})
    assert rest.status_code == 200
    assert rest.headers["ratelimit"].startswith('"token_bucket";r=0;')
    free = await client.post("/items", json={"units": 0})
    assert free.status_code == 200  # a zero cost passes an empty bucket and takes nothing


@pytest.mark.valkey
@pytest.mark.parametrize("where", ["standalone", "cluster"])
@pytest.mark.parametrize("algo", ["token_bucket", "fixed_window", "sliding_window"])
async def test_concurrent_body_costs_take_exactly_the_quota_on_valkey(
    make_client, key_prefix, where, algo, request
) -> None:  # type: ignore[no-untyped-def]
    """30 concurrent requests of cost 3 against a quota of 10: exactly 3 pass (9 units), the rest are
    refused without taking anything, so a cost-1 request still fits afterwards and a second does not."""
    url = request.getfixturevalue("valkey_url" if where == "standalone" else "valkey_cluster_url")
    sections = {
        "token_bucket": SLOW_BUCKET,
        "fixed_window": {"algo": "fixed_window", "fixed_window": {"limit": 10, "window": 10**9}},
        "sliding_window": {"algo": "sliding_window", "sliding_window": {"limit": 10, "window": 10**9}},
    }
    app = limited_app(
        {**sections[algo], "cost": {"source": "body", "name": "units"}},
        # generous bounds: this test is about exactness, and the machine may be busy
        GuardSettings(valkey_url=url, key_prefix=key_prefix, pooling={"socket_timeout": 5.0}),  # type: ignore[arg-type]
        path="/items",
    )
    client = make_client(app)
    responses = await asyncio.gather(*(client.post("/items", json={"units": 3}) for _ in range(30)))
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 27
    assert (await client.post("/items", json={"units": 1})).status_code == 200
    assert (await client.post("/items", json={"units": 1})).status_code == 429


async def test_query_and_path_sources(make_client) -> None:  # type: ignore[no-untyped-def]
    query = make_client(memory_app({**SLOW_BUCKET, "cost": {"source": "query", "name": "n", "default": 1}}))
    assert (await query.get("/items?n=4")).headers["ratelimit"].startswith('"token_bucket";r=6;')
    assert (await query.get("/items")).headers["ratelimit"].startswith('"token_bucket";r=5;')
    assert (await query.get("/items?n=x")).status_code == 400
    path = make_client(
        limited_app(
            {**SLOW_BUCKET, "cost": {"source": "path", "name": "n"}},
            backend=MemoryBackend(clock=Clock()),
            path="/batch/{n}",
            # the key is per route and user, not per path value, so the costs add up
        )
    )
    assert (await path.get("/batch/8")).headers["ratelimit"].startswith('"token_bucket";r=2;')
    assert (await path.get("/batch/3")).status_code == 429


async def test_header_cost_is_believed_only_from_a_trusted_upstream(make_client) -> None:  # type: ignore[no-untyped-def]
    rl = {**SLOW_BUCKET, "cost": {"source": "header", "name": "X-Upstream-Cost", "default": 5}}
    settings = GuardSettings(trusted_proxies=["10.0.0.0/8"])
    proxy = make_client(memory_app(rl, settings), client_addr=("10.1.2.3", 4000))
    assert (
        (await proxy.get("/items", headers={"x-upstream-cost": "2"}))
        .headers["ratelimit"]
        .startswith('"token_bucket";r=8;')
    )
    direct = make_client(memory_app(rl, settings), client_addr=("192.0.2.7", 4000))
    forged = await direct.get("/items", headers={"x-upstream-cost": "0"})
    assert forged.headers["ratelimit"].startswith('"token_bucket";r=5;')  # ignored: the default


async def test_hook_in_code_and_in_toml_form(make_client) -> None:  # type: ignore[no-untyped-def]
    async def by_method(ctx) -> int:  # type: ignore[no-untyped-def]
        return 6 if ctx.method == "POST" else 1

    client = make_client(memory_app({**SLOW_BUCKET, "cost": {"source": "hook", "hook": by_method}}))
    assert (await client.post("/items")).headers["ratelimit"].startswith('"token_bucket";r=4;')
    module = types.ModuleType("ag_cost_hooks")
    module.three = lambda ctx: 3  # type: ignore[attr-defined]
    sys.modules["ag_cost_hooks"] = module
    try:
        dotted = make_client(
            memory_app({**SLOW_BUCKET, "cost": {"source": "hook", "hook": "ag_cost_hooks:three"}})
        )
        assert (await dotted.get("/items")).headers["ratelimit"].startswith('"token_bucket";r=7;')
    finally:
        del sys.modules["ag_cost_hooks"]


def test_config_errors_at_registration() -> None:
    from pydantic import ValidationError

    from asgi_guard.config import RateLimitConfig

    with pytest.raises(ValidationError, match="needs a name"):
        RateLimitConfig(cost={"source": "body"})
    with pytest.raises(ValidationError, match="cannot be imported"):
        RateLimitConfig(cost={"source": "hook", "hook": "no_such_module_xyz:f"})
    assert RateLimitConfig(cost=5).cost.value == 5
