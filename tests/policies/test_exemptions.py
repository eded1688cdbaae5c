"""Exemptions by role, CIDR, API key, principal and hook: they skip rate limits and/or credits, and
never authentication (a request without a valid token is a 401 whatever its address or claims)."""

from __future__ import annotations

import hashlib

import pytest
from _policy_apps import bearer, policy_app
from prometheus_client import REGISTRY

from asgi_guard import GuardSettings
from asgi_guard.stages.credits import credit_store
from asgi_guard.state import MemoryBackend, ValkeyBackend

ONE = {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 1, "window": 10**9}}  # no test run crosses its end


def exempt_count(stage: str) -> float:
    if stage == "rate_limit":
        labels = {"route": "items", "policy": "-", "decision": "exempt"}
        return REGISTRY.get_sample_value("asgi_guard_rate_limit_decisions_total", labels) or 0.0
    labels = {"route": "items", "credit_type": "default", "action": "exempt"}
    return REGISTRY.get_sample_value("asgi_guard_credits_total", labels) or 0.0


@pytest.fixture(params=["memory", "standalone", "cluster"])
async def settings_backend(request: pytest.FixtureRequest, key_prefix: str):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        yield GuardSettings(_env_file=None, metrics_collect=True), MemoryBackend()  # type: ignore[call-arg]
        return
    url = request.getfixturevalue("valkey_url" if request.param == "standalone" else "valkey_cluster_url")
    yield GuardSettings(valkey_url=url, key_prefix=key_prefix, metrics_collect=True, _env_file=None), None  # type: ignore[call-arg]


@pytest.mark.valkey
async def test_exempt_by_role_skips_limits_and_credits_not_auth(make_client, settings_backend) -> None:  # type: ignore[no-untyped-def]
    settings, backend = settings_backend
    app = policy_app(settings, backend, rate_limit=ONE, required_credits=5, exempt={"roles": ["internal"]})
    client = make_client(app)
    before = exempt_count("rate_limit"), exempt_count("credits")
    staff = [await client.get("/items", headers=bearer("ops", roles=["internal"])) for _ in range(3)]
    assert [r.status_code for r in staff] == [200, 200, 200]  # no limit, no balance needed
    assert "ratelimit" not in staff[0].headers
    assert exempt_count("rate_limit") == before[0] + 3
    assert exempt_count("credits") == before[1] + 3
    # everyone else: limited and charged (no balance: 402)
    assert (await client.get("/items", headers=bearer("eve", roles=["viewer"]))).status_code == 402
    # a role claim in an unsigned or missing token buys nothing
    assert (await client.get("/items")).status_code == 401
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJvcHMiLCJyb2xlcyI6WyJpbnRlcm5hbCJdfQ."
    assert (await client.get("/items", headers={"authorization": "Bearer " + forged})).status_code == 401


@pytest.mark.valkey
async def test_exempt_by_cidr_from_rate_limit_only(make_client, settings_backend) -> None:  # type: ignore[no-untyped-def]
    settings, backend = settings_backend
    exempt = {"cidrs": ["10.0.0.0/8", "2001:db8::/32"], "stages": ["rate_limit"]}
    app = policy_app(settings, backend, rate_limit=ONE, required_credits=1, exempt=exempt)
    if backend is None:
        backend = ValkeyBackend(settings.valkey_url, key_prefix=settings.key_prefix)
    store = credit_store(backend)
    await store.set("batch", 2)
    await store.set("eve", 2)
    inside = make_client(app, client_addr=("10.9.8.7", 1234))
    assert [(await inside.get("/items", headers=bearer("batch"))).status_code for _ in range(3)] == [
        200,
        200,
        402,
    ]
    assert await store.balance("batch") == 0  # still charged: the exemption is from rate_limit only
    assert (await inside.get("/items")).status_code == 401  # and still authenticated
    outside = make_client(app, client_addr=("192.0.2.1", 1234))
    assert [(await outside.get("/items", headers=bearer("eve"))).status_code for _ in range(2)] == [200, 429]
    v6 = make_client(app, client_addr=("2001:db8::5", 1234))
    await store.set("v6", 5)
    assert [(await v6.get("/items", headers=bearer("v6"))).status_code for _ in range(2)] == [200, 200]
    if isinstance(backend, ValkeyBackend):
        await backend.close()


async def test_global_exemption_api_key_principal_and_hook(make_client) -> None:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256(b"monitoring-key").hexdigest()
    settings = GuardSettings(_env_file=None, exempt={"api_keys": [digest], "principals": ["probe"]})  # type: ignore[call-arg]
    client = make_client(policy_app(settings, MemoryBackend(), rate_limit=ONE))
    keyed = {**bearer("anyone"), "x-api-key": "monitoring-key"}
    assert [(await client.get("/items", headers=keyed)).status_code for _ in range(2)] == [200, 200]
    assert [(await client.get("/items", headers=bearer("probe"))).status_code for _ in range(2)] == [200, 200]
    wrong = {**bearer("guess"), "x-api-key": "monitoring-kez"}
    assert [(await client.get("/items", headers=wrong)).status_code for _ in range(2)] == [200, 429]

    async def health_checks(ctx) -> bool:  # type: ignore[no-untyped-def]
        return ctx.method == "GET" and ctx.principal is not None and ctx.principal.subject.startswith("hc-")

    hooked = make_client(policy_app(None, MemoryBackend(), rate_limit=ONE, exempt={"hook": health_checks}))
    assert [(await hooked.get("/items", headers=bearer("hc-1"))).status_code for _ in range(2)] == [200, 200]
    assert [(await hooked.get("/items", headers=bearer("user"))).status_code for _ in range(2)] == [200, 429]


def test_exemption_config_rejects_plain_keys_and_bad_networks() -> None:
    from pydantic import ValidationError

    from asgi_guard import JobConfig

    with pytest.raises(ValidationError, match="SHA-256"):
        JobConfig(exempt={"api_keys": ["monitoring-key"]})
    with pytest.raises(ValidationError, match="not a network"):
        JobConfig(exempt={"cidrs": ["10.0.0.0/33"]})
    with pytest.raises(ValidationError):
        JobConfig(exempt={"stages": ["security"]})  # never authentication
