"""Issue 12's leaks as attacks, on the memory store and a real valkey-server: the cache must never
hand one client's response to another (RFC 9111 shared-cache rules, Vary, Host, freshness, 304)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cache_helpers import make_backend
from guardkit import Clock
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import CacheConfig, PoolingConfig
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend


@pytest.fixture(params=["memory", "valkey"])
async def kv(request: pytest.FixtureRequest, clock: Clock, key_prefix: str) -> AsyncIterator[Backend]:
    made = await make_backend(request, request.param, clock, key_prefix)
    yield made
    await made.close()


def app_for(
    backend: Backend,
    routes: list[Any],
    configs: dict[str, JobConfig],
    key_prefix: str = "ag",
    middleware: list[Middleware] | None = None,
    **settings: Any,
) -> GuardMiddleware:
    registry = RouteRegistry()
    for path, config in configs.items():
        registry.register(path, config)
    guard_settings = GuardSettings(key_prefix=key_prefix, _env_file=None, **settings)  # type: ignore[call-arg]
    inner = Starlette(routes=routes, middleware=middleware or [])
    return GuardMiddleware(inner, registry=registry, settings=guard_settings, backend=backend)


def cached(name: str = "page", **cache: Any) -> JobConfig:
    return JobConfig(endpoint_name=name, cache=CacheConfig(enabled=True, **cache))


class Counter:
    def __init__(self) -> None:
        self.calls = 0


# -- Set-Cookie, private, no-store ------------------------------------------------------------------
async def test_set_cookie_is_never_served_to_another_client(
    kv: Backend, make_client: Any, key_prefix: str
) -> None:
    seen = Counter()

    async def login(request: Request) -> Response:
        seen.calls += 1
        response = JSONResponse({"call": seen.calls})
        response.set_cookie("sid", f"secret-{seen.calls}")
        return response

    app = app_for(kv, [Route("/welcome", login)], {"/welcome": cached()}, key_prefix)  # not `shared`
    client = make_client(app)
    first = await client.get("/welcome")
    assert "secret-1" in first.headers["set-cookie"]
    client.cookies.clear()
    other = await client.get("/welcome")
    assert other.headers["x-cache"] == "MISS" and "secret-1" not in other.headers.get("set-cookie", "")
    assert seen.calls == 2


async def test_set_cookie_opt_in_stores_without_the_cookie(
    kv: Backend, make_client: Any, key_prefix: str
) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        response = PlainTextResponse("page")
        response.set_cookie("visitor", f"v{seen.calls}")
        return response

    config = cached(store_despite=["set-cookie"], credential_cookies=[])
    app = app_for(kv, [Route("/p", page)], {"/p": config}, key_prefix)
    client = make_client(app)
    first = await client.get("/p")
    assert first.headers["set-cookie"].startswith("visitor=v1")
    hit = await client.get("/p")
    assert hit.headers["x-cache"] == "HIT" and "set-cookie" not in hit.headers and seen.calls == 1


@pytest.mark.parametrize("control", ["private", "private, max-age=60", "no-store", "no-cache", "max-age=0"])
async def test_unstorable_responses_are_never_shared(
    kv: Backend, make_client: Any, key_prefix: str, control: str
) -> None:
    seen = Counter()

    async def account(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse({"call": seen.calls}, headers={"cache-control": control})

    app = app_for(kv, [Route("/account", account)], {"/account": cached()}, key_prefix)
    client = make_client(app)
    await client.get("/account")
    second = await client.get("/account")
    assert second.headers["x-cache"] == "MISS" and second.json() == {"call": 2}


# -- credentials the guard did not verify -----------------------------------------------------------
def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()


async def _own_auth(request: Request) -> Response:
    """An app that authenticates by itself (no JWT stage): Basic, or a session cookie."""
    user = request.cookies.get("sid")
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
    if user is None:
        return JSONResponse({"account": None}, status_code=200)
    control = request.query_params.get("cc")
    headers = {"cache-control": control} if control else {}
    return JSONResponse({"account": f"{user}'s balance"}, headers=headers)


async def test_basic_auth_app_never_serves_alice_to_bob(
    kv: Backend, make_client: Any, key_prefix: str
) -> None:
    app = app_for(kv, [Route("/me", _own_auth)], {"/me": cached()}, key_prefix)
    client = make_client(app)
    alice = await client.get("/me", headers={"authorization": _basic("alice")})
    assert alice.json() == {"account": "alice's balance"}
    assert alice.headers["cache-status"] == "asgi-guard; fwd=bypass; detail=credentials"
    bob = await client.get("/me", headers={"authorization": _basic("bob")})
    assert bob.json() == {"account": "bob's balance"} and bob.headers["x-cache"] == "MISS"
    anonymous = await client.get("/me")
    assert anonymous.json() == {"account": None}


async def test_authorization_with_public_is_shared(kv: Backend, make_client: Any, key_prefix: str) -> None:
    app = app_for(kv, [Route("/me", _own_auth)], {"/me": cached()}, key_prefix)
    client = make_client(app)
    first = await client.get("/me?cc=public,max-age=60", headers={"authorization": _basic("alice")})
    assert first.headers["x-cache"] == "MISS"
    again = await client.get("/me?cc=public,max-age=60", headers={"authorization": _basic("alice")})
    assert again.headers["x-cache"] == "HIT"  # RFC 9111 §3.5: the origin said public


async def test_cookie_authenticated_app_never_serves_alice_to_bob(
    kv: Backend, make_client: Any, key_prefix: str
) -> None:
    app = app_for(kv, [Route("/me", _own_auth)], {"/me": cached()}, key_prefix)
    client = make_client(app)
    alice = await client.get("/me", headers={"cookie": "sid=alice"})
    bob = await client.get("/me", headers={"cookie": "sid=bob"})
    assert alice.json() == {"account": "alice's balance"} and bob.json() == {"account": "bob's balance"}
    assert bob.headers["cache-status"].startswith("asgi-guard; fwd=bypass")
    assert (await client.get("/me")).json() == {"account": None}


async def test_named_credential_cookies_leave_other_cookies_cacheable(
    kv: Backend, make_client: Any, key_prefix: str
) -> None:
    app = app_for(kv, [Route("/me", _own_auth)], {"/me": cached(credential_cookies=["sid"])}, key_prefix)
    client = make_client(app)
    await client.get("/me", headers={"cookie": "theme=dark"})
    assert (await client.get("/me", headers={"cookie": "theme=light"})).headers["x-cache"] == "HIT"
    bob = await client.get("/me", headers={"cookie": "theme=dark; sid=bob"})
    assert bob.json() == {"account": "bob's balance"} and bob.headers["x-cache"] == "MISS"


async def test_verified_principal_is_keyed(
    kv: Backend, make_client: Any, key_prefix: str, fake_auth: None
) -> None:
    async def mine(request: Request) -> Response:
        return JSONResponse({"for": request.headers.get("x-user")}, headers={"cache-control": "private"})

    app = app_for(kv, [Route("/mine", mine)], {"/mine": cached()}, key_prefix)
    client = make_client(app)
    for user in ("ann", "bob", "ann", "bob"):
        answer = await client.get("/mine", headers={"x-user": user, "authorization": "Bearer t-" + user})
        assert answer.json() == {"for": user}
    assert answer.headers["x-cache"] == "HIT"  # per principal: private is fine


# -- Vary -------------------------------------------------------------------------------------------
async def test_vary_stores_variants(backend: Backend, make_client: Any, key_prefix: str) -> None:
    kv = backend  # memory, Valkey and the cluster
    seen = Counter()

    async def hello(request: Request) -> Response:
        seen.calls += 1
        text = "bonjour" if request.headers.get("accept-language", "").startswith("fr") else "hello"
        return PlainTextResponse(text, headers={"vary": "Accept-Language"})

    app = app_for(kv, [Route("/hello", hello)], {"/hello": cached()}, key_prefix)
    client = make_client(app)
    assert (await client.get("/hello", headers={"accept-language": "en"})).text == "hello"
    french = await client.get("/hello", headers={"accept-language": "fr"})
    assert french.text == "bonjour" and french.headers["x-cache"] == "MISS"
    for lang, text in (("en", "hello"), ("fr", "bonjour")):
        answer = await client.get("/hello", headers={"accept-language": lang})
        assert answer.text == text and answer.headers["x-cache"] == "HIT"
    # the exact value selects: "FR" is its own variant (the app here matches "fr" case-sensitively,
    # so a normalised "FR" would have filled or read the French one; tests/cache/test_cache_header_attacks.py)
    upper = await client.get("/hello", headers={"accept-language": "FR"})
    assert upper.text == "hello" and upper.headers["x-cache"] == "MISS"
    assert (await client.get("/hello")).headers["x-cache"] == "MISS"  # absent is its own variant
    assert seen.calls == 4


async def test_vary_star_is_never_stored(kv: Backend, make_client: Any, key_prefix: str) -> None:
    async def star(request: Request) -> Response:
        return PlainTextResponse("x", headers={"vary": "*"})

    client = make_client(app_for(kv, [Route("/s", star)], {"/s": cached()}, key_prefix))
    await client.get("/s")
    assert (await client.get("/s")).headers["x-cache"] == "MISS"


BIG = {"text": "compress me " * 100}


async def _big(request: Request) -> Response:
    return JSONResponse(BIG)


@pytest.mark.parametrize("where", ["behind", "in_front"])
async def test_gzip_and_identity_never_cross(
    kv: Backend, make_client: Any, key_prefix: str, where: str
) -> None:
    if where == "behind":  # GZip between the guard and the handler: the cache sees gzip bodies
        app: Any = app_for(
            kv, [Route("/big", _big)], {"/big": cached()}, key_prefix, [Middleware(GZipMiddleware)]
        )
    else:  # GZip in front of the guard: the cache sees identity bodies
        app = GZipMiddleware(app_for(kv, [Route("/big", _big)], {"/big": cached()}, key_prefix))
    client = make_client(app)
    for _ in range(2):
        for encoding in ("gzip", "identity", "gzip", "identity"):
            response = await client.get("/big", headers={"accept-encoding": encoding})
            if encoding == "identity":
                assert "content-encoding" not in response.headers
            else:
                assert response.headers["content-encoding"] == "gzip"
            assert response.json() == BIG  # httpx decodes gzip; identity must already be JSON


# -- Host -------------------------------------------------------------------------------------------
async def _links(request: Request) -> Response:
    return PlainTextResponse(f"home: {request.url_for('links')}")


async def test_host_is_part_of_the_key(kv: Backend, make_client: Any, key_prefix: str) -> None:
    app = app_for(kv, [Route("/links", _links, name="links")], {"/links": cached()}, key_prefix)
    client = make_client(app)
    poisoned = await client.get("/links", headers={"host": "evil.example"})
    assert "evil.example" in poisoned.text
    honest = await client.get("/links")
    assert honest.headers["x-cache"] == "MISS" and "evil.example" not in honest.text
    assert (await client.get("/links")).headers["x-cache"] == "HIT"


async def test_hosts_outside_the_allowed_list_bypass(kv: Backend, make_client: Any, key_prefix: str) -> None:
    config = cached(allowed_hosts=["testserver", "*.example.org"])
    app = app_for(kv, [Route("/links", _links, name="links")], {"/links": config}, key_prefix)
    client = make_client(app)
    evil = await client.get("/links", headers={"host": "evil.example"})
    assert evil.headers["cache-status"] == "asgi-guard; fwd=bypass; detail=host"
    await client.get("/links", headers={"host": "a.example.org"})
    assert (await client.get("/links", headers={"host": "a.example.org"})).headers["x-cache"] == "HIT"
    assert (await client.get("/links")).headers["x-cache"] == "MISS"


async def test_forwarded_host_only_from_trusted_proxies(make_client: Any) -> None:
    config = cached(trust_forwarded_host=True)
    app = app_for(
        MemoryBackend(),
        [Route("/links", _links, name="links")],
        {"/links": config},
        trusted_proxies=["10.0.0.0/8"],
    )
    direct = make_client(app)  # 127.0.0.1 is not a trusted proxy: X-Forwarded-Host is ignored
    await direct.get("/links", headers={"x-forwarded-host": "evil.example"})
    assert (await direct.get("/links")).headers["x-cache"] == "HIT"
    proxied = make_client(app, client_addr=("10.1.2.3", 4000))
    assert (await proxied.get("/links", headers={"x-forwarded-host": "shop.example"})).headers[
        "x-cache"
    ] == "MISS"


# -- freshness --------------------------------------------------------------------------------------
async def test_response_max_age_shorter_than_route_ttl(make_client: Any, clock: Clock) -> None:
    seen = Counter()

    async def short(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse({"call": seen.calls}, headers={"cache-control": "max-age=5"})

    app = app_for(MemoryBackend(clock=clock), [Route("/s", short)], {"/s": cached(default={"cache_ttl": 60})})
    client = make_client(app)
    await client.get("/s")
    clock.now += 4
    hit = await client.get("/s")
    assert hit.headers["x-cache"] == "HIT" and hit.headers["age"] == "4"
    assert hit.headers["cache-status"] == "asgi-guard; hit; ttl=1"
    clock.now += 2
    assert (await client.get("/s")).json() == {"call": 2}


@pytest.mark.parametrize("control", ["max-age=1", "s-maxage=1, max-age=600", "public, max-age=1"])
async def test_response_freshness_on_valkey(
    valkey_url: str, make_client: Any, key_prefix: str, control: str
) -> None:
    seen = Counter()

    async def short(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse({"call": seen.calls}, headers={"cache-control": control})

    backend = ValkeyBackend(valkey_url, PoolingConfig(socket_timeout=3.0), key_prefix)
    try:
        client = make_client(app_for(backend, [Route("/s", short)], {"/s": cached()}, key_prefix))
        await client.get("/s")
        assert (await client.get("/s")).headers["x-cache"] == "HIT"
        await asyncio.sleep(1.2)
        assert (await client.get("/s")).json() == {"call": 2}
    finally:
        await backend.close()


async def test_expires_and_age(make_client: Any, clock: Clock) -> None:
    async def dated(request: Request) -> Response:
        return PlainTextResponse(
            "x",
            headers={
                "date": "Sun, 06 Nov 1994 08:49:37 GMT",
                "expires": "Sun, 06 Nov 1994 08:49:47 GMT",  # 10 s
                "age": "3",
            },
        )

    client = make_client(app_for(MemoryBackend(clock=clock), [Route("/d", dated)], {"/d": cached()}))
    await client.get("/d")
    clock.now += 2
    hit = await client.get("/d")
    assert hit.headers["age"] == "5" and hit.headers["cache-status"] == "asgi-guard; hit; ttl=5"
    clock.now += 6
    assert (await client.get("/d")).headers["x-cache"] == "MISS"


@pytest.mark.parametrize("request_control", ["no-cache", "max-age=0"])
async def test_request_no_cache_revalidates(
    kv: Backend, make_client: Any, key_prefix: str, request_control: str
) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse({"call": seen.calls})

    client = make_client(app_for(kv, [Route("/p", page)], {"/p": cached()}, key_prefix))
    await client.get("/p")
    fresh = await client.get("/p", headers={"cache-control": request_control})
    assert fresh.json() == {"call": 2} and fresh.headers["cache-status"] == "asgi-guard; fwd=request"
    assert (await client.get("/p")).json() == {"call": 2}


async def test_request_max_age(make_client: Any, clock: Clock) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse({"call": seen.calls})

    client = make_client(app_for(MemoryBackend(clock=clock), [Route("/p", page)], {"/p": cached()}))
    await client.get("/p")
    clock.now += 10
    assert (await client.get("/p", headers={"cache-control": "max-age=20"})).json() == {"call": 1}
    assert (await client.get("/p", headers={"cache-control": "max-age=5"})).json() == {"call": 2}


async def test_stale_while_revalidate_refreshes_once(make_client: Any, clock: Clock) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        await asyncio.sleep(0.05)
        return JSONResponse(
            {"call": seen.calls}, headers={"cache-control": "max-age=5, stale-while-revalidate=30"}
        )

    client = make_client(app_for(MemoryBackend(clock=clock), [Route("/p", page)], {"/p": cached()}))
    await client.get("/p")
    clock.now += 10
    stale = await asyncio.gather(*(client.get("/p") for _ in range(5)))
    assert all(r.json() == {"call": 1} and r.headers["x-cache"] == "HIT" for r in stale)
    assert all("stale-while-revalidate" in r.headers["cache-status"] for r in stale)
    await asyncio.sleep(0.2)
    assert seen.calls == 2  # one background refresh
    assert (await client.get("/p")).json() == {"call": 2}


async def test_stale_if_error(make_client: Any, clock: Clock) -> None:
    state = {"fail": False, "calls": 0}

    async def page(request: Request) -> Response:
        state["calls"] += 1
        if state["fail"]:
            return PlainTextResponse("down", status_code=503)
        return JSONResponse({"ok": True}, headers={"cache-control": "max-age=5, stale-if-error=60"})

    client = make_client(app_for(MemoryBackend(clock=clock), [Route("/p", page)], {"/p": cached()}))
    await client.get("/p")
    clock.now += 10
    state["fail"] = True
    rescued = await client.get("/p")
    assert rescued.status_code == 200 and rescued.json() == {"ok": True}
    assert rescued.headers["cache-status"] == "asgi-guard; hit; detail=stale-if-error"
    clock.now += 100
    assert (await client.get("/p")).status_code == 503


# -- validators -------------------------------------------------------------------------------------
async def test_304_from_the_cache(backend: Backend, make_client: Any, key_prefix: str) -> None:
    kv = backend  # memory, Valkey and the cluster
    seen = Counter()

    async def tagged(request: Request) -> Response:
        seen.calls += 1
        return PlainTextResponse(
            "body", headers={"etag": '"v1"', "last-modified": "Sun, 06 Nov 1994 08:49:37 GMT"}
        )

    client = make_client(app_for(kv, [Route("/t", tagged)], {"/t": cached()}, key_prefix))
    await client.get("/t")
    match = await client.get("/t", headers={"if-none-match": 'W/"v0", "v1"'})
    assert match.status_code == 304 and match.content == b"" and match.headers["etag"] == '"v1"'
    assert match.headers["x-cache"] == "HIT"
    other = await client.get("/t", headers={"if-none-match": '"v2"'})
    assert other.status_code == 200 and other.text == "body"
    since = await client.get("/t", headers={"if-modified-since": "Mon, 07 Nov 1994 08:49:37 GMT"})
    assert since.status_code == 304
    older = await client.get("/t", headers={"if-modified-since": "Sat, 05 Nov 1994 08:49:37 GMT"})
    assert older.status_code == 200 and seen.calls == 1


async def test_generated_strong_etag(kv: Backend, make_client: Any, key_prefix: str) -> None:
    async def plain(request: Request) -> Response:
        return PlainTextResponse("same body")

    client = make_client(app_for(kv, [Route("/e", plain)], {"/e": cached(etag=True)}, key_prefix))
    await client.get("/e")
    hit = await client.get("/e")
    etag = hit.headers["etag"]
    assert etag.startswith('"') and len(etag) == 34
    assert (await client.get("/e", headers={"if-none-match": etag})).status_code == 304


async def test_head_uses_the_get_entry(kv: Backend, make_client: Any, key_prefix: str) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        return PlainTextResponse("hello")

    client = make_client(app_for(kv, [Route("/h", page)], {"/h": cached()}, key_prefix))
    await client.get("/h")
    head = await client.head("/h")
    assert head.status_code == 200 and head.content == b"" and head.headers["x-cache"] == "HIT"
    assert seen.calls == 1


# -- unsafe methods (RFC 9111 §4.4) -----------------------------------------------------------------
async def test_unsafe_methods_invalidate(kv: Backend, make_client: Any, key_prefix: str) -> None:
    items = {"1": "one", "2": "two"}

    async def item(request: Request) -> Response:
        key = request.path_params["item_id"]
        if request.method == "PUT":
            body = (await request.body()).decode()
            if not body:
                return PlainTextResponse("empty", status_code=422)
            items[key] = body
            return PlainTextResponse("ok")
        return PlainTextResponse(items[key])

    route = Route("/items/{item_id}", item, methods=["GET", "PUT", "DELETE"])
    client = make_client(app_for(kv, [route], {"/items/{item_id}": cached()}, key_prefix))
    assert (await client.get("/items/1")).text == "one"
    assert (await client.get("/items/1?x=1")).text == "one"
    assert (await client.get("/items/2")).text == "two"
    rejected = await client.put("/items/1", content=b"")
    assert rejected.status_code == 422 and "x-cache" not in rejected.headers
    assert (await client.get("/items/1")).headers["x-cache"] == "HIT"  # a failed write keeps it
    assert (await client.put("/items/1", content=b"uno")).status_code == 200
    after = await client.get("/items/1")
    assert after.text == "uno" and after.headers["x-cache"] == "MISS"
    assert (await client.get("/items/1?x=1")).text == "uno"  # every query of the path
    assert (await client.get("/items/2")).headers["x-cache"] == "HIT"  # other resources stay


# -- streams ----------------------------------------------------------------------------------------
async def test_sse_is_not_single_flighted_or_stored(kv: Backend, make_client: Any, key_prefix: str) -> None:
    seen = Counter()

    async def events(request: Request) -> Response:
        seen.calls += 1

        async def stream() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()
                await asyncio.sleep(0.3)

        return StreamingResponse(stream(), media_type="text/event-stream")

    client = make_client(app_for(kv, [Route("/events", events)], {"/events": cached()}, key_prefix))
    started = time.monotonic()
    first, second = await asyncio.gather(client.get("/events"), client.get("/events"))
    elapsed = time.monotonic() - started
    assert first.text == second.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert seen.calls == 2 and first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert elapsed < 1.6  # run side by side: the second never waited for the first stream
    assert (await client.get("/events")).headers["x-cache"] == "MISS" and seen.calls == 3


async def test_stale_while_revalidate_on_valkey(valkey_url: str, make_client: Any, key_prefix: str) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse(
            {"call": seen.calls}, headers={"cache-control": "max-age=1, stale-while-revalidate=30"}
        )

    backend = ValkeyBackend(valkey_url, PoolingConfig(socket_timeout=3.0), key_prefix)
    try:
        client = make_client(app_for(backend, [Route("/p", page)], {"/p": cached()}, key_prefix))
        await client.get("/p")
        await asyncio.sleep(1.2)
        stale = await client.get("/p")
        assert stale.json() == {"call": 1} and "stale-while-revalidate" in stale.headers["cache-status"]
        for _ in range(50):  # the background refresh lands
            await asyncio.sleep(0.05)
            if seen.calls == 2:
                break
        fresh = await client.get("/p")
        assert fresh.json() == {"call": 2} and fresh.headers["x-cache"] == "HIT" and seen.calls == 2
    finally:
        await backend.close()


async def test_query_normalisation(kv: Backend, make_client: Any, key_prefix: str) -> None:
    seen = Counter()

    async def page(request: Request) -> Response:
        seen.calls += 1
        return JSONResponse({"call": seen.calls})

    configs = {
        "/n": cached("n", normalize_query=True, ignore_query_params=["utm_*", "fbclid"]),
        "/raw": cached("raw"),
    }
    client = make_client(app_for(kv, [Route("/n", page), Route("/raw", page)], configs, key_prefix))
    await client.get("/n?b=2&a=1")
    for query in ("a=1&b=2", "b=2&a=1&utm_source=x", "fbclid=9&a=1&b=2&utm_medium=y"):
        assert (await client.get(f"/n?{query}")).headers["x-cache"] == "HIT", query
    assert (await client.get("/n?a=1&b=3")).headers["x-cache"] == "MISS"
    await client.get("/raw?b=2&a=1")
    assert (await client.get("/raw?a=1&b=2")).headers["x-cache"] == "MISS"  # raw by default
