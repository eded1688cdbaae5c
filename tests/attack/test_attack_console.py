"""Attacks on the operator console (asgi_guard.console): client garbage is a 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, install

TOKEN = "a-console-token-of-enough-length"


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("home")


def console() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/", home)])
    install(app, None, GuardSettings(_env_file=None, console_path="/_guard", console_token=TOKEN))  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.9", 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


@pytest.mark.parametrize("form", [b"token=x&a=1&b=2&c=3&d=4", b"&" * 4000])
async def test_anonymous_login_form_with_many_fields_is_a_400(form: bytes) -> None:
    async with console() as c:
        response = await c.post(
            "/_guard/login", content=form, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_credits_lookup_with_many_query_fields_is_a_400() -> None:
    query = "user=a&" + "&".join(f"x{i}=1" for i in range(10))
    async with console() as c:
        response = await c.get(f"/_guard/api/credits?{query}", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400


# -- guessing the token -------------------------------------------------------------------------
def _login(token: str) -> dict[str, object]:
    return {
        "content": f"token={token}".encode(),
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    }


async def test_guessing_the_token_through_the_login_form_is_throttled() -> None:
    """An attacker posts guesses at wire speed: after 5 wrong ones every answer is a 429, the right
    token included (checked before the comparison), while another address is not affected."""
    app = Starlette(routes=[Route("/", home)])
    install(app, None, GuardSettings(_env_file=None, console_path="/_guard", console_token=TOKEN))  # type: ignore[call-arg]

    def client(peer: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(peer, 4000))
        return httpx.AsyncClient(transport=transport, base_url="http://api")

    async with client("203.0.113.9") as attacker, client("198.51.100.7") as operator:
        statuses = [
            (await attacker.post("/_guard/login", **_login(f"guess-{i:020d}"))).status_code for i in range(40)
        ]
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
        right = await attacker.post("/_guard/login", **_login(TOKEN))
        assert right.status_code == 429 and "set-cookie" not in right.headers
        assert int(right.headers["retry-after"]) > 0
        assert right.headers["content-type"] == "application/problem+json"
        # the same budget covers the Bearer header and the API
        api = await attacker.get("/_guard/api/summary", headers={"authorization": f"Bearer {TOKEN}"})
        assert api.status_code == 429
        # the operator elsewhere logs in
        assert (await operator.post("/_guard/login", **_login(TOKEN))).status_code == 303


@pytest.mark.parametrize("peer", ["2001:db8:1:2::{}", "203.0.113.{}"])
async def test_guessing_with_bearer_headers_from_rotating_v6_addresses_is_throttled(peer: str) -> None:
    """Bearer guesses count too; rotating addresses inside one IPv6 /64 gets no fresh budget (an
    IPv4 attacker needs a new address per 5 guesses)."""
    app = Starlette(routes=[Route("/", home)])
    install(app, None, GuardSettings(_env_file=None, console_path="/_guard", console_token=TOKEN))  # type: ignore[call-arg]
    statuses = []
    for i in range(1, 21):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(peer.format(i), 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            guess = {"authorization": f"Bearer wrong-guess-{i:016d}"}
            statuses.append((await c.get("/_guard/api/summary", headers=guess)).status_code)
    if ":" in peer:
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    else:
        assert set(statuses) == {401}


async def test_no_credential_does_not_count_and_the_window_ends() -> None:
    from asgi_guard.console.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(3, 60, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 60
    assert throttle.retry_after("192.0.2.2") == 0
    now[0] += 59.5
    assert throttle.retry_after("192.0.2.1") == 1
    now[0] += 1
    assert throttle.retry_after("192.0.2.1") == 0
    assert throttle.failed("192.0.2.1") == 0  # a fresh window

    app = Starlette(routes=[Route("/", home)])
    install(app, None, GuardSettings(_env_file=None, console_path="/_guard", console_token=TOKEN))  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("192.0.2.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        assert {(await c.get("/_guard/api/summary")).status_code for _ in range(20)} == {401}
        assert (
            await c.get("/_guard/api/summary", headers={"authorization": f"Bearer {TOKEN}"})
        ).status_code == 200


def test_the_throttles_memory_is_bounded() -> None:
    from asgi_guard.console.throttle import LoginThrottle

    throttle = LoginThrottle(1, 60, max_clients=100)
    for i in range(5000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle._failures) <= 100
