"""`legacy_headers`: X-RateLimit-Limit/Remaining/Reset beside the IETF fields, only when asked."""

from __future__ import annotations

import pytest
from _rl_apps import limited_app

from asgi_guard import GuardSettings
from asgi_guard.state import MemoryBackend

T0 = 1_800_000_000.0
FIXED_2 = {"algo": "fixed_window", "fixed_window": {"limit": 2, "window": 60}}
TWO_LIMITS = {
    "algo": "fixed_window",
    "fixed_window": {"limit": 5, "window": 60},
    "limits": [{"name": "burst", "algo": "fixed_window", "fixed_window": {"limit": 2, "window": 10}}],
}


def memory_app(rate_limit: dict):  # type: ignore[no-untyped-def]
    return limited_app(rate_limit, backend=MemoryBackend(clock=lambda: T0))


async def test_off_by_default(make_client) -> None:  # type: ignore[no-untyped-def]
    response = await make_client(memory_app(FIXED_2)).get("/items/1")
    assert "x-ratelimit-limit" not in response.headers
    assert "ratelimit" in response.headers


async def test_single_limit_allowed_and_rejected(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(memory_app({**FIXED_2, "legacy_headers": True}))
    first = await client.get("/items/1")
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("2", "1")
    assert first.headers["x-ratelimit-reset"] == "60"
    await client.get("/items/1")
    rejected = await client.get("/items/1")
    assert rejected.status_code == 429
    assert (rejected.headers["x-ratelimit-limit"], rejected.headers["x-ratelimit-remaining"]) == ("2", "0")
    assert rejected.headers["ratelimit"] == '"fixed_window";r=0;t=60'  # the IETF field is still there


@pytest.mark.valkey
@pytest.mark.parametrize("where", ["standalone", "cluster"])
async def test_the_limit_nearest_exhaustion_is_shown_on_valkey(
    make_client, key_prefix, where, request
) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("valkey_url" if where == "standalone" else "valkey_cluster_url")
    app = limited_app(
        {**TWO_LIMITS, "legacy_headers": True}, GuardSettings(valkey_url=url, key_prefix=key_prefix)
    )
    client = make_client(app)
    first = await client.get("/items/1")
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("2", "1")
    assert int(first.headers["x-ratelimit-reset"]) <= 10
