"""Attacks through header spelling (found by this round's attacker; every test failed before the fix):

- an app that sends response header names not lower-cased (`Set-Cookie`, `Vary`,
  `Cache-Control`: ASGI asks for lower case, some frameworks write them as spelt) must get the same
  rules: a stored cookie would be replayed to every client, a missed Vary or `private` would hand
  one client's answer to another;
- a request the app reads differently from another must never select the other's variant: a
  variant is the Vary'd headers' exact values, not a normalised form (an upper-case
  `Accept-Language: FR` filling the "fr" variant with the app's default answer; an empty first
  value before the real one, where the app reads the first).
Memory, Valkey and the cluster (the `backend` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest
from cache_helpers import guard
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from asgi_guard import JobConfig
from asgi_guard.config import CacheConfig
from asgi_guard.state import Backend


def cached() -> JobConfig:
    return JobConfig(endpoint_name="spelling", cache=CacheConfig(enabled=True))


def app_sending(extra: list[tuple[bytes, bytes]], backend: Backend, key_prefix: str) -> Any:
    async def endpoint(request: Request) -> Response:
        lang = request.headers.get("accept-language", "none")
        who = request.headers.get("x-user", "anon")
        response = PlainTextResponse(f"lang={lang} user={who}")
        for name, value in extra:
            response.raw_headers.append((name, value.replace(b"WHO", who.encode())))
        return response

    return guard(backend, [Route("/p", endpoint)], {"/p": cached()}, key_prefix)


@pytest.mark.parametrize("name", [b"Set-Cookie", b"SET-COOKIE"])
async def test_a_set_cookie_in_any_case_is_never_replayed(
    backend: Backend, make_client: Any, key_prefix: str, name: bytes
) -> None:
    app = app_sending([(name, b"session=WHO-secret; HttpOnly")], backend, key_prefix)
    await make_client(app).get("/p", headers={"x-user": "victim"})
    other = await make_client(app).get("/p", headers={"x-user": "attacker"})  # no cookie jar
    assert "victim-secret" not in other.headers.get("set-cookie", "")
    assert other.text == "lang=none user=attacker" and other.headers["x-cache"] == "MISS"


async def test_a_vary_in_any_case_selects_variants(
    backend: Backend, make_client: Any, key_prefix: str
) -> None:
    app = app_sending([(b"Vary", b"Accept-Language")], backend, key_prefix)
    client = make_client(app)
    assert (await client.get("/p", headers={"accept-language": "fr"})).text == "lang=fr user=anon"
    de = await client.get("/p", headers={"accept-language": "de"})
    assert de.text == "lang=de user=anon" and de.headers["x-cache"] == "MISS"


@pytest.mark.parametrize("value", [b"private", b"no-store"])
async def test_a_cache_control_in_any_case_is_obeyed(
    backend: Backend, make_client: Any, key_prefix: str, value: bytes
) -> None:
    app = app_sending([(b"Cache-Control", value)], backend, key_prefix)
    client = make_client(app)
    await client.get("/p", headers={"x-user": "victim"})
    second = await client.get("/p", headers={"x-user": "attacker"})
    assert second.text == "lang=none user=attacker" and second.headers["x-cache"] == "MISS"


@pytest.mark.parametrize(
    ("name", "evil", "victim"),
    [
        ("accept-language", [b"", b"fr"], b"fr"),  # the app reads the first value
        ("accept-language", [b"FR"], b"fr"),  # the app matches case-sensitively
        ("accept-language", [b"fr,  de"], b"fr, de"),  # the app compares the raw string
        ("x-tenant", [b"a", b"b"], b"a,b"),  # a repeated field is not the joined one
    ],
)
async def test_a_request_the_app_reads_otherwise_never_fills_another_variant(
    backend: Backend, make_client: Any, key_prefix: str, name: str, evil: list[bytes], victim: bytes
) -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"seen": request.headers.get(name) or "default"}, headers={"vary": name})

    app = guard(backend, [Route("/v", endpoint)], {"/v": cached()}, key_prefix)
    await make_client(app).get("/v", headers=[(name.encode(), v) for v in evil])  # the attacker fills
    answer = await make_client(app).get("/v", headers=[(name.encode(), victim)])
    assert answer.json() == {"seen": victim.decode()} and answer.headers["x-cache"] == "MISS"
    again = await make_client(app).get("/v", headers=[(name.encode(), victim)])
    assert again.json() == {"seen": victim.decode()} and again.headers["x-cache"] == "HIT"
