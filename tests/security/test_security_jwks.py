"""JWKS against a real local HTTP server: first fetch, key rotation, unknown kids, outages."""

from __future__ import annotations

from typing import Any

from seckit import JwksServer, KeyPair, assert_problem, bearer, build_app, hs_settings

from asgi_guard import GuardSettings
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.security.jwks import JwksClient
from asgi_guard.stages.security.jwt import JWKS_SERVICE

JWT_ROUTE = {"auth_type_required": "jwt"}


def jwks_settings(url: str) -> GuardSettings:
    return hs_settings(jwt_secret=None, jwks_url=url, jwt_algorithms=["RS256", "ES256"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def app_with_client(url: str, **options: Any) -> tuple[Any, JwksClient]:
    """An app whose JWKS client has test-sized intervals and a clock the test moves."""
    runtime = GuardRuntime(jwks_settings(url))
    client = JwksClient(url, **options)
    runtime.service(JWKS_SERVICE, lambda: client)
    return build_app(JWT_ROUTE, runtime=runtime), client


async def test_jwks_default_path_fetches_once(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    jwks_server.serve(rsa_key)
    client = make_client(build_app(JWT_ROUTE, jwks_settings(jwks_server.url)))
    for n in range(3):
        response = await client.get("/r", headers=bearer(rsa_key.token(jti=f"t{n}")))
        assert response.status_code == 200
        assert response.json()["sub"] == "alice"
    assert jwks_server.hits == 1


async def test_key_rotation(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair, rsa_key2: KeyPair, ec_key: KeyPair
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    app, _ = app_with_client(jwks_server.url, min_refresh_interval=30, clock=clock)
    client = make_client(app)
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200
    assert jwks_server.hits == 1

    # The IdP rotates: the new key is published beside the old one, then the old one is withdrawn.
    jwks_server.serve(rsa_key, rsa_key2, ec_key)
    clock.now += 31
    assert (await client.get("/r", headers=bearer(rsa_key2.token()))).status_code == 200
    assert jwks_server.hits == 2
    assert (await client.get("/r", headers=bearer(ec_key.token()))).status_code == 200
    assert jwks_server.hits == 2

    jwks_server.serve(rsa_key2)
    clock.now += 400  # past the cache TTL: the next request refreshes the set
    assert (await client.get("/r", headers=bearer(rsa_key2.token(jti="fresh")))).status_code == 200
    assert jwks_server.hits == 3
    response = await client.get("/r", headers=bearer(rsa_key.token(jti="old-key")))
    body = assert_problem(response, 401, "invalid-token", "invalid_token")
    assert body["detail"] == "token key id (kid) is unknown"


async def test_unknown_kid_refreshes_at_most_once_per_interval(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair, rsa_key2: KeyPair
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    app, _ = app_with_client(jwks_server.url, min_refresh_interval=30, clock=clock)
    client = make_client(app)
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200
    clock.now += 31
    for kid in ("random-1", "random-2", "random-3"):
        response = await client.get("/r", headers=bearer(rsa_key2.token(kid=kid)))
        assert_problem(response, 401, "invalid-token", "invalid_token")
    assert jwks_server.hits == 2  # the first unknown kid refetched; the next two did not
    # A key published inside the interval is picked up only once the interval has passed.
    jwks_server.serve(rsa_key, rsa_key2)
    assert (await client.get("/r", headers=bearer(rsa_key2.token()))).status_code == 401
    clock.now += 31
    assert (await client.get("/r", headers=bearer(rsa_key2.token(jti="later")))).status_code == 200
    assert jwks_server.hits == 3


async def test_kid_bound_to_another_algorithm(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    jwks_server.serve(rsa_key)
    jwks_server.document["keys"][0]["alg"] = "RS256"
    client = make_client(
        build_app(
            JWT_ROUTE,
            hs_settings(jwt_secret=None, jwks_url=jwks_server.url, jwt_algorithms=["RS256", "PS256"]),
        )
    )
    ps = KeyPair(rsa_key.private, rsa_key.kid, "PS256")
    response = await client.get("/r", headers=bearer(ps.token()))
    assert_problem(response, 401, "invalid-token", "invalid_token")
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200


async def test_jwks_server_error_is_a_fast_503(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    jwks_server.serve(rsa_key)
    jwks_server.status = 500
    client = make_client(build_app(JWT_ROUTE, jwks_settings(jwks_server.url)))
    response = await client.get("/r", headers=bearer(rsa_key.token()))
    body = assert_problem(response, 503, "jwks-unavailable")
    assert response.headers["retry-after"] == "1"
    assert body["detail"] == "the signing keys cannot be fetched right now"


async def test_jwks_unreachable_is_503(make_client: Any, rsa_key: KeyPair) -> None:
    client = make_client(build_app(JWT_ROUTE, jwks_settings("http://127.0.0.1:9/jwks.json")))
    assert_problem(await client.get("/r", headers=bearer(rsa_key.token())), 503, "jwks-unavailable")


async def test_hanging_jwks_server_times_out_to_503(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    jwks_server.serve(rsa_key)
    jwks_server.delay = 1.5
    app, _ = app_with_client(jwks_server.url, timeout=0.2)
    client = make_client(app)
    assert_problem(await client.get("/r", headers=bearer(rsa_key.token())), 503, "jwks-unavailable")


async def test_garbage_jwks_document_is_503(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    jwks_server.document = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}, "junk"]}
    client = make_client(build_app(JWT_ROUTE, jwks_settings(jwks_server.url)))
    assert_problem(await client.get("/r", headers=bearer(rsa_key.token())), 503, "jwks-unavailable")


async def test_outage_after_a_good_fetch_keeps_serving_cached_keys(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    app, _ = app_with_client(jwks_server.url, cache_ttl=60, min_refresh_interval=5, clock=clock)
    client = make_client(app)
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200
    jwks_server.status = 503
    clock.now += 120
    response = await client.get("/r", headers=bearer(rsa_key.token(jti="during-outage")))
    assert response.status_code == 200
    assert jwks_server.hits == 2


async def test_token_without_kid_uses_the_only_key(
    make_client: Any, jwks_server: JwksServer, rsa_key: KeyPair
) -> None:
    jwks_server.serve(rsa_key)
    client = make_client(build_app(JWT_ROUTE, jwks_settings(jwks_server.url)))
    assert (await client.get("/r", headers=bearer(rsa_key.token(kid=None)))).status_code == 200


async def test_jwks_prefetched_at_lifespan_startup(jwks_server: JwksServer, rsa_key: KeyPair) -> None:
    jwks_server.serve(rsa_key)
    app = build_app(JWT_ROUTE, jwks_settings(jwks_server.url))
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.complete"
    assert jwks_server.hits == 1
