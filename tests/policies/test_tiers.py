"""Tiers: one route, limits chosen by a claim of the verified principal; exact counts per tier."""

from __future__ import annotations

import hashlib

import pytest
from _policy_apps import TIERS, bearer, policy_app
from guardkit import Clock
from prometheus_client import REGISTRY
from pydantic import ValidationError

from asgi_guard import JobConfig
from asgi_guard.state import MemoryBackend

FIXED = {"algo": "fixed_window", "fixed_window": {"limit": 2, "window": 1_000_000}}
TIERED = {"enabled": True, **FIXED, "tiers": {"free": "3/day", "pro": "5/day"}}


def allowed(verdict: str, policy: str) -> float:
    labels = {"route": "items", "policy": policy, "decision": verdict}
    return REGISTRY.get_sample_value("asgi_guard_rate_limit_decisions_total", labels) or 0.0


async def test_two_tiers_under_one_route(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(policy_app(backend=MemoryBackend(clock=Clock()), tier=TIERS, rate_limit=TIERED))
    before = allowed("rejected", "free"), allowed("rejected", "pro")
    free = [await client.get("/items", headers=bearer("alice", tier="free")) for _ in range(4)]
    pro = [await client.get("/items", headers=bearer("bob", tier="pro")) for _ in range(6)]
    assert [r.status_code for r in free] == [200] * 3 + [429]
    assert [r.status_code for r in pro] == [200] * 5 + [429]
    assert free[0].headers["ratelimit-policy"] == '"free";q=3;w=86400'
    assert pro[0].headers["ratelimit-policy"] == '"pro";q=5;w=86400'
    assert free[3].json()["policy"] == "free"
    assert (allowed("rejected", "free"), allowed("rejected", "pro")) == (before[0] + 1, before[1] + 1)


async def test_forged_or_unknown_tier_gets_the_default_and_no_token_is_401(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(policy_app(backend=MemoryBackend(clock=Clock()), tier=TIERS, rate_limit=TIERED))
    # a tier the config does not know is the default (free): 3
    odd = [await client.get("/items", headers=bearer("carol", tier="platinum")) for _ in range(4)]
    assert [r.status_code for r in odd] == [200] * 3 + [429]
    assert odd[0].headers["ratelimit-policy"] == '"free";q=3;w=86400'
    # a client cannot pick its tier with a header or an unsigned token
    assert (await client.get("/items", headers={"x-tier": "pro"})).status_code == 401
    unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5IiwidGllciI6InBybyJ9."
    assert (await client.get("/items", headers={"authorization": "Bearer " + unsigned})).status_code == 401


async def test_a_tier_not_listed_uses_the_routes_own_limits(make_client) -> None:  # type: ignore[no-untyped-def]
    rl = {**TIERED, "tiers": {"pro": "5/day"}}
    client = make_client(policy_app(backend=MemoryBackend(clock=Clock()), tier=TIERS, rate_limit=rl))
    free = [await client.get("/items", headers=bearer("dave")) for _ in range(3)]
    assert [r.status_code for r in free] == [200, 200, 429]
    assert free[0].headers["ratelimit-policy"] == '"fixed_window";q=2;w=1000000'


async def test_role_and_api_key_selectors_and_full_form(make_client) -> None:  # type: ignore[no-untyped-def]
    full = {
        "algo": "fixed_window",
        "fixed_window": {"limit": 4, "window": 60},
        "limits": [{"name": "daily", "algo": "fixed_window", "fixed_window": {"limit": 6, "window": 86400}}],
    }
    rl = {**TIERED, "tiers": {"gold": full, "free": "1/min"}}
    by_role = {"by": "role", "default": "free", "tiers": ["gold", "free"]}
    client = make_client(policy_app(backend=MemoryBackend(clock=Clock()), tier=by_role, rate_limit=rl))
    gold = await client.get("/items", headers=bearer("erin", roles=["gold", "free"]))
    assert gold.headers["ratelimit-policy"] == '"gold";q=4;w=60, "gold.daily";q=6;w=86400'
    plain = await client.get("/items", headers=bearer("frank", roles=["viewer"]))
    assert plain.headers["ratelimit-policy"] == '"free";q=1;w=60'

    digest = hashlib.sha256(b"key-of-erin").hexdigest()
    by_key = {"by": "api_key:X-API-Key", "default": "free", "keys": {digest: "gold"}}
    client = make_client(policy_app(backend=MemoryBackend(clock=Clock()), tier=by_key, rate_limit=rl))
    keyed = await client.get("/items", headers={**bearer("erin"), "x-api-key": "key-of-erin"})
    assert keyed.headers["ratelimit-policy"].startswith('"gold";q=4;w=60')
    wrong = await client.get("/items", headers={**bearer("erin"), "x-api-key": "guess"})
    assert wrong.headers["ratelimit-policy"] == '"free";q=1;w=60'


async def test_credits_price_by_tier(make_client) -> None:  # type: ignore[no-untyped-def]
    from asgi_guard.stages.credits import credit_store

    backend = MemoryBackend(clock=Clock())
    store = credit_store(backend)
    await store.set("alice", 10)
    await store.set("bob", 10)
    price = {"source": "tier", "tiers": {"free": 3, "pro": 1}}
    client = make_client(policy_app(backend=backend, tier=TIERS, credits_price=price))
    assert (await client.get("/items", headers=bearer("alice"))).headers["x-credits-remaining"] == "7"
    assert (await client.get("/items", headers=bearer("bob", tier="pro"))).headers[
        "x-credits-remaining"
    ] == "9"


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="tier selector"):
        JobConfig(rate_limit=TIERED)
    with pytest.raises(ValidationError, match="N/UNIT"):
        JobConfig(tier=TIERS, rate_limit={**TIERED, "tiers": {"free": "lots"}})
    with pytest.raises(ValidationError, match="shorthand needs"):
        JobConfig(tier=TIERS, rate_limit={"algo": "throttle", "tiers": {"free": "1/s"}})
    with pytest.raises(ValidationError, match="SHA-256"):
        JobConfig(tier={"by": "api_key:x-api-key", "default": "free", "keys": {"plain-key": "pro"}})
    with pytest.raises(ValidationError, match="not claim"):
        JobConfig(tier={"by": "cookie", "default": "free"})
