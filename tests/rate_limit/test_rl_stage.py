"""The rate-limit stage as a user sees it, on the embedded backend with an injected clock."""

from __future__ import annotations

import pytest
from _rl_apps import limited_app
from prometheus_client import REGISTRY
from pydantic import ValidationError

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import RateLimitConfig
from asgi_guard.state import MemoryBackend

T0 = 1_800_000_000.0  # a multiple of 60, so fixed windows start here


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


FIXED_2 = {"algo": "fixed_window", "fixed_window": {"limit": 2, "window": 60}}


def app_with(rate_limit: dict, clock: Clock | None = None, **job):  # type: ignore[no-untyped-def]
    return limited_app(rate_limit, backend=MemoryBackend(clock=clock or Clock()), **job)


async def test_allowed_responses_carry_remaining_quota(make_client) -> None:
    client = make_client(app_with(FIXED_2))
    first = await client.get("/items/1")
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"fixed_window";q=2;w=60'
    assert first.headers["ratelimit"] == '"fixed_window";r=1;t=60'
    second = await client.get("/items/1")
    assert second.headers["ratelimit"] == '"fixed_window";r=0;t=60'


async def test_429_is_problem_json_naming_the_policy(make_client) -> None:
    clock = Clock()
    client = make_client(app_with(FIXED_2, clock))
    await client.get("/items/1")
    clock.now += 15
    await client.get("/items/1")
    rejected = await client.get("/items/1")
    assert rejected.status_code == 429
    assert rejected.headers["content-type"] == "application/problem+json"
    assert rejected.headers["retry-after"] == "45"
    assert rejected.headers["ratelimit"] == '"fixed_window";r=0;t=45'
    assert rejected.headers["ratelimit-policy"] == '"fixed_window";q=2;w=60'
    body = rejected.json()
    assert body["status"] == 429
    assert body["type"] == "urn:asgi-guard:problem:rate-limited"
    assert body["title"] == "Too Many Requests"
    assert body["policy"] == "fixed_window"
    assert body["retry_after"] == 45
    assert body["request_id"] == rejected.headers["x-request-id"]
    assert "fixed_window" in body["detail"] and "2 per 60 s" in body["detail"]
    assert "rate_window" not in rejected.text
    clock.now += 45  # the next window
    assert (await client.get("/items/1")).status_code == 200


async def test_default_key_is_per_route_user_and_resource(make_client) -> None:
    app = app_with({**FIXED_2, "fixed_window": {"limit": 1, "window": 60}})
    alice = make_client(app, client_addr=("10.0.0.1", 1))
    bob = make_client(app, client_addr=("10.0.0.2", 1))
    assert (await alice.get("/items/1")).status_code == 200
    assert (await alice.get("/items/1")).status_code == 429
    assert (await alice.get("/items/2")).status_code == 200  # another resource
    assert (await bob.get("/items/1")).status_code == 200  # another user (client IP when anonymous)


async def test_key_by_header_falls_back_to_ip(make_client) -> None:
    app = app_with(
        {
            "algo": "fixed_window",
            "fixed_window": {"limit": 1, "window": 60},
            "key_by": ["route", "header:X-API-Key"],
        }
    )
    client = make_client(app)
    assert (await client.get("/items/1", headers={"x-api-key": "k1"})).status_code == 200
    assert (await client.get("/items/2", headers={"x-api-key": "k1"})).status_code == 429
    assert (await client.get("/items/1", headers={"x-api-key": "k2"})).status_code == 200
    assert (await client.get("/items/1")).status_code == 200  # no key: the client IP
    assert (await client.get("/items/1")).status_code == 429
    # a hostile key cannot break out of the hash tag or forge separators, and huge ones are fine
    for hostile in ("{x}:y", "a" * 5000, "%3A"):
        assert (await client.get("/items/1", headers={"x-api-key": hostile})).status_code == 200


async def test_key_by_global_shares_one_budget(make_client) -> None:
    app = app_with({"algo": "fixed_window", "fixed_window": {"limit": 2, "window": 60}, "key_by": ["global"]})
    a = make_client(app, client_addr=("10.0.0.1", 1))
    b = make_client(app, client_addr=("10.0.0.2", 1))
    assert [(await c.get(f"/items/{i}")).status_code for i, c in enumerate([a, b, a, b])] == [
        200,
        200,
        429,
        429,
    ]


async def test_resource_id_from_body(make_client) -> None:
    app = app_with(
        {"algo": "fixed_window", "fixed_window": {"limit": 1, "window": 60}},
        path="/jobs",
        resource_id_field="job",
        resource_id_from_body=True,
    )
    client = make_client(app)
    assert (await client.post("/jobs", json={"job": "a"})).status_code == 200
    assert (await client.post("/jobs", json={"job": "a"})).status_code == 429
    assert (await client.post("/jobs", json={"job": "b"})).status_code == 200
    broken = await client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400  # client garbage is a 4xx, never a 500


async def test_multi_limit_all_must_pass_and_rejections_consume_nothing(make_client) -> None:
    clock = Clock()
    app = app_with(
        {
            "algo": "token_bucket",
            "name": "burst",
            "token_bucket": {"rate_limit": 2, "refill_rate": 1.0},
            "limits": [
                {"algo": "fixed_window", "name": "daily", "fixed_window": {"limit": 3, "window": 86400}}
            ],
        },
        clock,
    )
    client = make_client(app)
    r1, r2, r3 = [await client.get("/items/1") for _ in range(3)]
    assert [r1.status_code, r2.status_code, r3.status_code] == [200, 200, 429]
    assert r1.headers["ratelimit-policy"] == '"burst";q=2;w=2, "daily";q=3;w=86400'
    assert r2.headers["ratelimit"].startswith('"burst";r=0;t=1, "daily";r=1;')
    assert r3.json()["policy"] == "burst"
    assert r3.headers["ratelimit"].startswith('"burst";r=0;t=1, "daily";r=1;')  # daily untouched
    clock.now += 1  # one token back
    assert (await client.get("/items/1")).status_code == 200  # daily: the 3rd, not the 4th
    clock.now += 10
    rejected = await client.get("/items/1")
    assert rejected.status_code == 429
    assert rejected.json()["policy"] == "daily"
    assert rejected.headers["ratelimit"].startswith('"burst";r=2;t=1, "daily";r=0;')  # burst full, untouched


async def test_shadow_mode_decides_counts_and_never_rejects(make_client) -> None:
    def shadow_count() -> float:
        value = REGISTRY.get_sample_value(
            "asgi_guard_rate_limit_decisions_total",
            {"route": "items", "policy": "fixed_window", "decision": "shadow_rejected"},
        )
        return value or 0.0

    before = shadow_count()
    # metrics are opt-in: collect them (nothing is counted with metrics off, the default)
    client = make_client(
        limited_app(
            {**FIXED_2, "shadow": True}, settings=GuardSettings(metrics_collect=True), backend=MemoryBackend(clock=Clock())
        )
    )
    responses = [await client.get("/items/1") for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.headers["ratelimit"] for r in responses] == [
        '"fixed_window";r=1;t=60',
        '"fixed_window";r=0;t=60',
        '"fixed_window";r=0;t=60',
        '"fixed_window";r=0;t=60',
    ]
    assert shadow_count() - before == 2


async def test_headers_may_be_hidden(make_client) -> None:
    client = make_client(app_with({**FIXED_2, "headers": False}))
    ok = await client.get("/items/1")
    assert "ratelimit" not in ok.headers and "ratelimit-policy" not in ok.headers
    await client.get("/items/1")
    rejected = await client.get("/items/1")
    assert rejected.status_code == 429
    assert "ratelimit" not in rejected.headers
    assert rejected.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    ("rate_limit", "first_headers", "then"),
    [
        (
            {"algo": "token_bucket", "token_bucket": {"rate_limit": 3, "refill_rate": 0.5}},
            '"token_bucket";r=2;t=2',
            [200, 200, 429],
        ),
        (
            {"algo": "sliding_window", "sliding_window": {"limit": 2, "window": 10}},
            '"sliding_window";r=1;t=10',
            [200, 429, 429],
        ),
        (
            {
                "algo": "sliding_window",
                "sliding_window": {"limit": 2, "window": 10, "precision": "approximate"},
            },
            '"sliding_window";r=1;t=10',
            [200, 429, 429],
        ),
        ({"algo": "throttle", "throttle": {"interval": 2}}, '"throttle";r=0;t=2', [429, 429, 429]),
        ({"algo": "debounce", "debounce": {"interval": 2}}, '"debounce";r=0;t=2', [429, 429, 429]),
    ],
)
async def test_each_algorithm_through_the_stack(make_client, rate_limit, first_headers, then) -> None:  # type: ignore[no-untyped-def]
    client = make_client(app_with(rate_limit))
    first = await client.get("/items/1")
    assert first.status_code == 200
    assert first.headers["ratelimit"] == first_headers
    assert [(await client.get("/items/1")).status_code for _ in then] == then


async def test_debounce_every_attempt_restarts_the_quiet_period(make_client) -> None:
    clock = Clock()
    client = make_client(app_with({"algo": "debounce", "debounce": {"interval": 2}}, clock))
    statuses = []
    for step in (0, 1.5, 1.5, 2.0, 0.5):
        clock.now += step
        statuses.append((await client.get("/items/1")).status_code)
    assert statuses == [200, 429, 429, 200, 429]


async def test_throttle_measures_from_the_last_accepted(make_client) -> None:
    clock = Clock()
    client = make_client(app_with({"algo": "throttle", "throttle": {"interval": 2}}, clock))
    statuses = []
    for step in (0, 1.5, 0.5, 1.0, 1.0):
        clock.now += step
        statuses.append((await client.get("/items/1")).status_code)
    assert statuses == [200, 429, 200, 429, 200]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="key_by"):
        RateLimitConfig(key_by=["usr"])
    with pytest.raises(ValidationError, match="key_by"):
        RateLimitConfig(key_by=["header:bad name"])
    with pytest.raises(ValidationError, match="unique"):
        RateLimitConfig(limits=[{"algo": "token_bucket"}])
    with pytest.raises(ValidationError):
        RateLimitConfig(sliding_window={"precision": "roughly"})
    with pytest.raises(ValidationError):
        JobConfig(rate_limit={"enabled": True, "rate_window": 5})  # the sketch's bug: no such field
    assert RateLimitConfig().key_by == ["route", "user", "resource"]
    assert RateLimitConfig().sliding_window.precision == "exact"
