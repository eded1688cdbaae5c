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
