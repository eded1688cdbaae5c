"""The operator console in-process: off by default, who may open it (attacks first), what it shows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from asgi_guard import GuardRuntime, GuardSettings
from asgi_guard.console import console_app
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.tally import DecisionTally, SpaceSaving
from tests.console.console_served import build

TOKEN = "console-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_GUARD_OUTBOX_PATH", str(tmp_path / "outbox.sqlite3"))


def make(peer: str = "127.0.0.1", **console: Any) -> tuple[httpx.AsyncClient, GuardRuntime]:
    options: dict[str, Any] = {"console_path": "/_guard", "console_token": TOKEN, **console}
    app, runtime, _ = build(GuardSettings(_env_file=None, jwt_secret="x" * 32, **options))  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver"), runtime


async def traffic(client: httpx.AsyncClient) -> None:
    for i in range(14):
        await client.get(f"/items/{i % 2}")  # 5 per item allowed: 4 x 429 (2 keys)
    for _ in range(4):
        await client.get("/catalog")  # 1 miss, 3 hits
    await client.get("/account")  # 401
    await client.get("/report")  # one credit
    for _ in range(5):
        await client.get("/flaky")  # 3 failures open the circuit, then 2 x 503
    for _ in range(2):
        await client.post("/orders", json={})  # no Pulsar: 2 events wait in the outbox


# -- off by default, and no cost when off -----------------------------------------------------------
async def test_off_by_default_passes_through_and_keeps_no_tally() -> None:
    app, runtime, _ = build(GuardSettings(_env_file=None, jwt_secret="x" * 32))  # type: ignore[call-arg]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/_guard/api/summary", headers=BEARER)).status_code == 404
        await client.get("/items/1")
    assert runtime.tally is None


async def test_counts_with_metrics_tracing_and_logs_off() -> None:
    """The telemetry stage feeds the console, so it stays on for it even with nothing else to do."""
    client, _ = make(metrics_path="")
    async with client:
        await client.get("/items/1")
        body = (await client.get("/_guard/api/summary", headers=BEARER)).json()
    assert body["counts"]["requests"] == 1


async def test_served_before_the_deny_mode_and_the_metrics_path_stays() -> None:
    client, _ = make(unregistered="deny", metrics_path="/metrics")
    async with client:
        assert (await client.get("/_guard/api/summary", headers=BEARER)).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        other = await client.get("/_guardian", headers=BEARER)  # not below /_guard: the app's own 404
        assert other.status_code == 404 and "console" not in other.text


# -- access: attacks first -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token-wrong-token"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": f"Bearer {TOKEN[:-1]}"},
        {"authorization": "Bearer"},
        {"cookie": f"asgi_guard_console={TOKEN}"},  # the raw token is not a session
        {"cookie": "asgi_guard_console=" + "0" * 64},
        {"authorization": b"Bearer \xff\xfe"},
        {"cookie": b"asgi_guard_console=\xff; x=\x00"},
    ],
)
@pytest.mark.parametrize(
    "path", ["/_guard/", "/_guard/api/summary", "/_guard/api/policies", "/_guard/api/credits?user=a"]
)
async def test_refused_without_the_token(headers: dict[str, Any], path: str) -> None:
    client, _ = make()
    async with client:
        response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert TOKEN not in response.text


async def test_browser_without_credential_goes_to_the_login_form() -> None:
    client, _ = make()
    async with client:
        response = await client.get("/_guard/", headers={"accept": "text/html"})
        assert response.status_code == 303 and response.headers["location"] == "login"
        form = await client.get("/_guard/login")
        assert form.status_code == 200 and "<form" in form.text


async def test_login_sets_a_session_cookie_not_the_token() -> None:
    client, _ = make()
    async with client:
        wrong = await client.post("/_guard/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        right = await client.post("/_guard/login", data={"token": TOKEN})
        assert right.status_code == 303
        cookie = right.headers["set-cookie"]
        assert TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/_guard" in cookie
        page = await client.get("/_guard/")  # the client keeps the cookie
        assert page.status_code == 200 and "asgi-guard console" in page.text


async def test_oversized_login_form_is_413() -> None:
    client, _ = make()
    async with client:
        response = await client.post("/_guard/login", content=b"token=" + b"a" * 10_000)
    assert response.status_code == 413


async def test_allowlist_refuses_other_addresses_with_403_even_with_the_token() -> None:
    client, _ = make(peer="203.0.113.9", console_allow=["127.0.0.0/8"])
    async with client:
        for path in ("/_guard/", "/_guard/api/summary", "/_guard/login"):
            response = await client.get(path, headers=BEARER)
            assert response.status_code == 403, path
            assert response.headers["content-type"] == "application/problem+json"


async def test_allowlist_alone_admits_listed_addresses() -> None:
    client, _ = make(console_token=None, console_allow=["127.0.0.1/32"])
    async with client:
        assert (await client.get("/_guard/api/summary")).status_code == 200


async def test_forwarded_header_from_an_untrusted_peer_does_not_pass_the_allowlist() -> None:
    client, _ = make(peer="203.0.113.9", console_token=None, console_allow=["127.0.0.1/32"])
    async with client:
        response = await client.get("/_guard/api/summary", headers={"x-forwarded-for": "127.0.0.1"})
    assert response.status_code == 403


def test_a_console_open_to_anyone_or_with_a_short_token_is_refused() -> None:
    runtime = GuardRuntime(GuardSettings(_env_file=None))  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="token or an IP allowlist"):
        console_app(runtime)
    with pytest.raises(ConfigError, match="16 characters"):
        console_app(runtime, token="short")
    with pytest.raises(ValidationError):
        GuardSettings(_env_file=None, console_path="/")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GuardSettings(_env_file=None, console_path="_guard")  # type: ignore[call-arg]


async def test_only_get_on_the_api_and_websockets_are_closed() -> None:
    client, _ = make()
    async with client:
        response = await client.post("/_guard/api/summary", headers=BEARER)
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
        assert (await client.get("/_guard/nope", headers=BEARER)).status_code == 404


async def test_page_headers_forbid_framing_and_foreign_sources() -> None:
    client, _ = make()
    async with client:
        page = await client.get("/_guard/", headers=BEARER)
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no fonts: offline


# -- what it shows --------------------------------------------------------------------------------------
async def test_summary_counts_decisions_limited_keys_cache_and_circuits() -> None:
    client, _ = make()
    async with client:
        await traffic(client)
        body = (await client.get("/_guard/api/summary", headers=BEARER)).json()
    counts = body["counts"]
    assert counts["requests"] == 27
    assert counts["statuses"] == {"2xx": 17, "4xx": 5, "5xx": 5}  # 5xx: 3 x 502 from /flaky, 2 x 503
    decided = {(d["stage"], d["outcome"], d["reason"]): d["count"] for d in counts["decisions"]}
    assert decided[("rate_limit", "rejected", "rate_limited")] == 4
    assert decided[("security", "rejected", "missing_token")] == 1
    assert decided[("circuit_breaker", "rejected", "circuit_open")] == 2
    assert decided[("credits", "allowed", "committed")] == 1
    assert {row["key"]: row["count"] for row in counts["top_limited"]} == {
        "items ~127.0.0.1 0": 2,  # `~`: an anonymous client, by its address
        "items ~127.0.0.1 1": 2,
    }
    assert (
        counts["cache"]["hits"] == 3 and counts["cache"]["misses"] == 1 and counts["cache"]["ratio"] == 0.75
    )
    assert body["circuits"] == {"flaky": "open"}
    assert body["outbox"] is not None  # the events route made a publisher


async def test_outbox_depth_and_age_once_events_wait() -> None:
    client, _ = make()
    async with client:
        for _ in range(2):
            await client.post("/orders", json={})  # no Pulsar: the publisher moves them to the outbox
        for _ in range(100):
            outbox = (await client.get("/_guard/api/summary", headers=BEARER)).json()["outbox"]
            if outbox["depth"] == 2:
                break
            await asyncio.sleep(0.05)
    assert outbox["depth"] == 2 and outbox["oldest_age_s"] >= 0


async def test_policies_list_each_route_with_its_limit_numbers() -> None:
    client, _ = make()
    async with client:
        rows = (await client.get("/_guard/api/policies", headers=BEARER)).json()
        page = (await client.get("/_guard/", headers=BEARER)).text
    by_template = {row["template"]: row for row in rows}
    items = by_template["/items/{resource_id}"]
    assert items["methods"] == ["GET", "HEAD"] or items["methods"] == ["GET"]
    assert "rate_limit" in items["stages"]
    assert items["limits"][0]["quota"] == 5 and items["limits"][0]["window_s"] == 10**9
    assert by_template["/report"]["credits"] == {"cost": 1, "type": "default"}
    assert by_template["/flaky"]["circuit_breaker"]["threshold"] == 3
    assert "/items/{resource_id}" in page and "fixed_window" in page


async def test_policies_show_declared_routes_router_defaults_and_a_reload() -> None:
    """FastAPI routes declared with `@guard` and `guard_router` (no registry entry) are listed with
    their effective policy (router defaults merged); a registry swapped in by a reload replaces
    the list; a route added after install() is listed once bound."""
    from fastapi import APIRouter, FastAPI

    from asgi_guard import RouteRegistry, guard, guard_router, install

    app = FastAPI()
    seven = {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 7}}
    admin = guard_router(APIRouter(prefix="/admin"), rate_limit=seven)

    @admin.get("/users")
    async def users() -> dict[str, str]:
        return {}

    @app.get("/things/{thing_id}")
    @guard(cache={"enabled": True})
    async def thing(thing_id: str) -> dict[str, str]:
        return {}

    app.include_router(admin)
    settings = GuardSettings(_env_file=None, console_path="/_guard", console_token=TOKEN)  # type: ignore[call-arg]
    middleware = install(app, RouteRegistry(), settings)

    @app.get("/later")
    @guard(required_credits=2)
    async def later() -> dict[str, str]:
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        rows = (await client.get("/_guard/api/policies", headers=BEARER)).json()
        by_template = {row["template"]: row for row in rows}
        assert set(by_template) == {"/admin/users", "/things/{thing_id}", "/later"}
        assert by_template["/admin/users"]["limits"][0]["quota"] == 7
        assert "cache" in by_template["/things/{thing_id}"]["stages"]
        assert by_template["/later"]["credits"]["cost"] == 2

        reloaded = RouteRegistry()
        three = {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 3}}
        reloaded.register("/admin/users", {"rate_limit": three})
        middleware.swap_registry(reloaded)
        rows = (await client.get("/_guard/api/policies", headers=BEARER)).json()
        quotas = {row["template"]: row.get("limits", [{}])[0].get("quota") for row in rows}
        assert quotas["/admin/users"] == 3  # the registry's entry over the router default
        assert set(quotas) == {"/admin/users", "/things/{thing_id}", "/later"}


async def test_credits_lookup_is_read_only_and_checks_its_input() -> None:
    client, _ = make()
    async with client:
        await client.get("/report")
        for _ in range(3):
            response = await client.get("/_guard/api/credits", params={"ip": "127.0.0.1"}, headers=BEARER)
            assert response.json() == {"ip": "127.0.0.1", "type": "default", "balance": 49}
            # the subject that reads like the address has a balance of its own
            subject = await client.get("/_guard/api/credits", params={"user": "127.0.0.1"}, headers=BEARER)
            assert subject.json() == {"user": "127.0.0.1", "type": "default", "balance": 0}
        assert (await client.get("/_guard/api/credits", headers=BEARER)).status_code == 400
        long = await client.get("/_guard/api/credits", params={"user": "u" * 300}, headers=BEARER)
        assert long.status_code == 400 and long.headers["content-type"] == "application/problem+json"
        other = await client.get(
            "/_guard/api/credits", params={"user": "nobody", "type": "gpu"}, headers=BEARER
        )
        assert other.json()["balance"] == 0


async def test_limited_keys_with_markup_are_never_rendered_as_html() -> None:
    """Keys carry client-chosen text; the page writes them with textContent only and the server
    page embeds none of them."""
    client, _ = make()
    async with client:
        for _ in range(7):
            await client.get("/items/<img src=x onerror=alert(1)>")
        page = (await client.get("/_guard/", headers=BEARER)).text
        summary = await client.get("/_guard/api/summary", headers=BEARER)
    assert "onerror" not in page and "innerHTML" not in page
    assert summary.headers["content-type"] == "application/json"
    assert any("onerror" in row["key"] for row in summary.json()["counts"]["top_limited"])


async def test_mounted_by_hand_on_a_sub_path() -> None:
    """`console_app(runtime, registry)` mounted with Starlette's Mount (root_path) works too."""
    from starlette.routing import Mount

    # metrics are opt-in: this test serves them, which keeps the telemetry stage on
    app, runtime, registry = build(GuardSettings(_env_file=None, jwt_secret="x" * 32, metrics_path="/metrics"))  # type: ignore[call-arg]
    # built after install(): still counts, as the metrics endpoint keeps the telemetry stage on
    app.router.routes.append(Mount("/ops/console", console_app(runtime, registry, token=TOKEN)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.get("/items/1")
        response = await client.get("/ops/console/api/summary", headers=BEARER)
        assert response.status_code == 200 and response.json()["counts"]["requests"] == 1
        redirect = await client.get("/ops/console", headers=BEARER)
        assert redirect.status_code in (307, 308)  # Starlette's Mount redirects first
        assert redirect.headers["location"].endswith("/ops/console/")


# -- the counters stay bounded ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=400), st.integers(1, 8))
def test_space_saving_bounds(stream: list[int], k: int) -> None:
    sketch = SpaceSaving(k)
    for item in stream:
        sketch.add(str(item))
    true = {str(i): stream.count(i) for i in set(stream)}
    assert len(sketch.counts) <= k
    assert sum(sketch.counts.values()) == len(stream)
    for item, count, error in sketch.top():
        assert count - error <= true[item] <= count  # never under, over by at most `error`
    # every item more frequent than n/k is tracked (the sketch's guarantee)
    for item, n in true.items():
        if n > len(stream) / k:
            assert item in sketch.counts


def test_tally_keys_are_capped() -> None:
    tally = DecisionTally(max_keys=4)

    class Route:
        def __init__(self, label: str) -> None:
            self.label = label

    class Ctx:
        def __init__(self, label: str) -> None:
            from asgi_guard.core.context import Decision

            self.route = Route(label)
            self.decisions = {"security": Decision("security", "rejected", "missing_token")}

    for i in range(50):
        tally.record(Ctx(f"route-{i}"), 401)  # type: ignore[arg-type]
    assert len(tally.decisions) <= 5
    assert tally.requests == 50
    assert json.loads(json.dumps(tally.snapshot()))["decisions"][0]["count"] == 50
