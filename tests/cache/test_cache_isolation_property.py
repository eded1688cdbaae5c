"""Property: a client never receives a body produced for another principal (or other credentials)
nor for another value of a header the response varies on, whatever the request headers, cookies
and response headers, concurrent or not; on the memory store and on a real valkey-server."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import pytest
from guardkit import FakeAuth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import asgi_guard.stack
from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import CacheConfig, PoolingConfig, RateLimitConfig
from asgi_guard.stages import STAGES
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend

VARYING = ("accept-language", "accept-encoding", "x-flavor")
CONTROLS = (
    None,
    "public, max-age=60",
    "private",
    "no-store",
    "max-age=60",
    "s-maxage=60",
    "must-revalidate, max-age=60",
    "no-cache",
    "private, max-age=60",
)
_COUNTER = itertools.count()

request_strategy = st.fixed_dictionaries(
    {
        "user": st.sampled_from([None, "alice", "bob"]),
        "auth": st.sampled_from([None, "Basic YWxpY2U6cHc=", "Basic Ym9iOnB3"]),
        "cookie": st.sampled_from([None, "sid=alice", "sid=bob", "theme=dark"]),
        "accept-language": st.sampled_from([None, "en", "fr", "EN", "fr, en"]),
        "accept-encoding": st.sampled_from([None, "gzip", "identity"]),
        "x-flavor": st.sampled_from([None, "a", "b"]),
        "path": st.sampled_from(["/r", "/r?q=1"]),
        "respond": st.fixed_dictionaries(
            {
                "cc": st.sampled_from(CONTROLS),
                "cookie": st.booleans(),
                "vary": st.lists(st.sampled_from(VARYING), unique=True, max_size=3),
            }
        ),
    }
)
scenario = st.fixed_dictionaries(
    {
        "shared": st.booleans(),
        "batches": st.lists(st.lists(request_strategy, min_size=1, max_size=3), min_size=1, max_size=5),
    }
)


async def handler(request: Request) -> Response:
    spec = json.loads(request.headers["x-respond"])
    await asyncio.sleep(0.005)
    body = {
        "n": next(_COUNTER),
        "user": request.headers.get("x-user"),
        "auth": request.headers.get("authorization"),
        "cookie": request.headers.get("cookie"),
        "vary": {name: request.headers.get(name) for name in spec["vary"]},
        "public": bool(spec["cc"])
        and any(d in spec["cc"] for d in ("public", "s-maxage", "must-revalidate")),
    }
    headers = {}
    if spec["cc"]:
        headers["cache-control"] = spec["cc"]
    if spec["vary"]:
        headers["vary"] = ", ".join(spec["vary"])
    response = JSONResponse(body, headers=headers)
    if spec["cookie"]:
        response.set_cookie("sid", f"n{body['n']}")
    return response


class _NoCookies(DefaultCookiePolicy):
    """The client keeps no cookie: each request carries exactly the scenario's."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


def _norm(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = ",".join(" ".join(p.split()) for p in value.split(",") if p.strip())
    return value.lower() if name.startswith("accept") else value


def _identity(user: str | None, auth: str | None, cookie: str | None) -> tuple[Any, ...]:
    return ("user", user) if user else ("creds", auth, cookie)


def check(shared: bool, sent: dict[str, Any], response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    for name, value in body["vary"].items():
        assert _norm(name, value) == _norm(name, sent[name]), (name, body, sent)
    mine = _identity(sent["user"], sent["auth"], sent["cookie"])
    theirs = _identity(body["user"], body["auth"], body["cookie"])
    if mine != theirs and not body["public"]:
        # `shared`: one entry for every verified or anonymous client (the operator's choice);
        # credentials the guard did not verify never take part in it
        producer_plain = body["user"] is not None or not (body["auth"] or body["cookie"])
        requester_plain = sent["user"] is not None or not (sent["auth"] or sent["cookie"])
        assert shared and producer_plain and requester_plain, ("another's body", body, sent, response.headers)
    if response.headers.get("x-cache") == "HIT":
        assert "set-cookie" not in response.headers


async def run_scenario(backend: Backend, data: dict[str, Any], limited: bool = False) -> None:
    label = "p" + uuid.uuid4().hex[:12]
    registry = RouteRegistry()
    config = JobConfig(endpoint_name=label, cache=CacheConfig(enabled=True, shared=data["shared"]))
    if limited:  # the lookup then rides the rate limiter's round trip (prefetch.CacheRider)
        limit = RateLimitConfig(
            enabled=True,
            algo="fixed_window",
            fixed_window={"limit": 10_000, "window": 3600},
            key_by=["global"],
        )
        config = config.model_copy(update={"rate_limit": limit})
    registry.register("/r", config)
    app = GuardMiddleware(
        Starlette(routes=[Route("/r", handler)]),
        registry=registry,
        settings=GuardSettings(_env_file=None),  # type: ignore[call-arg]
        backend=backend,
    )
    transport = httpx.ASGITransport(app=app)
    jar = CookieJar(policy=_NoCookies())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=jar) as client:
        del client.headers["accept-encoding"]  # only what the scenario sends

        async def send(sent: dict[str, Any]) -> tuple[dict[str, Any], httpx.Response]:
            headers = {"x-respond": json.dumps(sent["respond"])}
            for name, header in (("user", "x-user"), ("auth", "authorization"), ("cookie", "cookie")):
                if sent[name] is not None:
                    headers[header] = sent[name]
            for name in VARYING:
                if sent[name] is not None:
                    headers[name] = sent[name]
            return sent, await client.get(sent["path"], headers=headers)

        for batch in data["batches"]:
            for sent, response in await asyncio.gather(*(send(s) for s in batch)):
                check(data["shared"], sent, response)


@pytest.fixture
def with_fake_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_guard.stack, "STAGES", (FakeAuth, *STAGES))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scenario)
async def test_isolation_on_memory(with_fake_auth: None, data: dict[str, Any]) -> None:
    await run_scenario(MemoryBackend(), data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scenario)
async def test_isolation_on_valkey(with_fake_auth: None, valkey_url: str, data: dict[str, Any]) -> None:
    backend = ValkeyBackend(valkey_url, PoolingConfig(socket_timeout=3.0), "prop" + uuid.uuid4().hex[:6])
    try:
        await run_scenario(backend, data)
    finally:
        await backend.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scenario)
async def test_isolation_on_valkey_behind_a_rate_limit(
    with_fake_auth: None, valkey_url: str, data: dict[str, Any]
) -> None:
    backend = ValkeyBackend(valkey_url, PoolingConfig(socket_timeout=3.0), "prop" + uuid.uuid4().hex[:6])
    try:
        await run_scenario(backend, data, limited=True)
    finally:
        await backend.close()
