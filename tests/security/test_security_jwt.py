"""The JWT matrix: each case is a request against a real Starlette app with the whole stack mounted."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string
import time
from typing import Any

import jwt
import pytest
from seckit import (
    AUDIENCE,
    SECRET,
    KeyPair,
    assert_problem,
    b64,
    bearer,
    build_app,
    claims,
    hs_settings,
    hs_token,
)

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.core.errors import ConfigError

JWT_ROUTE = {"auth_type_required": "jwt"}


def rs_settings(key: KeyPair, **extra: Any) -> GuardSettings:
    values: dict[str, Any] = {
        "jwt_secret": None,
        "jwt_public_key": key.public_pem,
        "jwt_algorithms": [key.alg],
    }
    return hs_settings(**{**values, **extra})


async def test_valid_token_sets_the_principal(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers=bearer(hs_token()))
    assert response.status_code == 200
    assert response.json() == {
        "client_ip": "127.0.0.1",
        "user_key": "alice",
        "sub": "alice",
        "scopes": ["jobs:read", "jobs:write"],
        "roles": ["admin", "db_user"],
        "amr": [],
    }
    again = await client.get("/r", headers=bearer(hs_token()))
    assert again.status_code == 200


async def test_scp_claim_and_custom_roles_claim(make_client: Any) -> None:
    settings = hs_settings(jwt_roles_claim="realm_access.roles")
    client = make_client(build_app({**JWT_ROUTE, "user_permissions_required": ["a"]}, settings))
    token = hs_token(scope=None, roles=None, scp=["a", "b"], realm_access={"roles": ["ops"]})
    response = await client.get("/r", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["scopes"] == ["a", "b"]
    assert response.json()["roles"] == ["ops"]


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"exp": int(time.time()) - 3600}, "token has expired"),
        ({"nbf": int(time.time()) + 3600}, "token is not yet valid"),
        ({"iat": int(time.time()) + 3600}, "token is not yet valid"),
        ({"iss": "https://evil.example"}, "token issuer is not accepted"),
        ({"aud": "another-service"}, "token audience is not accepted"),
        ({"sub": None}, "token has no subject (sub)"),
        ({"exp": None}, "token lacks the exp claim"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "issued-in-future",
        "wrong-issuer",
        "wrong-audience",
        "no-sub",
        "no-exp",
    ],
)
async def test_rejected_claims(make_client: Any, extra: dict[str, Any], detail: str) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers=bearer(hs_token(**extra)))
    body = assert_problem(response, 401, "invalid-token", "invalid_token")
    assert body["detail"] == detail
    assert f'error_description="{detail}"' in response.headers["www-authenticate"]


async def test_leeway_accepts_a_just_expired_token(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE, hs_settings(jwt_leeway=120)))
    response = await client.get("/r", headers=bearer(hs_token(exp=int(time.time()) - 60)))
    assert response.status_code == 200


async def test_required_claims_are_per_route(make_client: Any) -> None:
    client = make_client(build_app({**JWT_ROUTE, "required_claims": ["exp", "jti"]}))
    response = await client.get("/r", headers=bearer(hs_token()))
    assert (
        assert_problem(response, 401, "invalid-token", "invalid_token")["detail"]
        == "token lacks the jti claim"
    )
    assert (await client.get("/r", headers=bearer(hs_token(jti="id-1")))).status_code == 200


async def test_alg_none_is_rejected(make_client: Any) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    client = make_client(build_app(JWT_ROUTE))
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        response = await client.get("/r", headers=bearer(token))
        assert_problem(response, 401, "invalid-token", "invalid_token")
        assert (
            "'none' is not accepted" in response.json()["detail"] or "malformed" in response.json()["detail"]
        )


async def test_algorithm_outside_the_allow_list(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers=bearer(hs_token(alg="HS512")))
    body = assert_problem(response, 401, "invalid-token", "invalid_token")
    assert body["detail"] == "token algorithm 'HS512' is not accepted"


def _hs256_signed_with(secret: bytes, kid: str | None = None) -> str:
    head: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        head["kid"] = kid
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims()).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_key_confusion_hs256_with_the_public_key_as_secret(make_client: Any, rsa_key: KeyPair) -> None:
    forged = _hs256_signed_with(rsa_key.public_pem.encode())
    # RS256-only server: HS256 is simply not accepted.
    client = make_client(build_app(JWT_ROUTE, rs_settings(rsa_key)))
    response = await client.get("/r", headers=bearer(forged))
    assert assert_problem(response, 401, "invalid-token", "invalid_token")["detail"] == (
        "token algorithm 'HS256' is not accepted"
    )
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200
    # A server that accepts both still checks HS256 only against its own secret, never the public key.
    both = hs_settings(jwt_public_key=rsa_key.public_pem, jwt_algorithms=["RS256", "HS256"])
    client = make_client(build_app(JWT_ROUTE, both))
    response = await client.get("/r", headers=bearer(forged))
    assert (
        assert_problem(response, 401, "invalid-token", "invalid_token")["detail"]
        == "token signature is invalid"
    )
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200
    assert (await client.get("/r", headers=bearer(hs_token()))).status_code == 200


async def test_tampered_payload(make_client: Any) -> None:
    header, _, signature = hs_token().split(".")
    forged_payload = b64(json.dumps(claims(sub="mallory", roles=["root"])).encode())
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers=bearer(f"{header}.{forged_payload}.{signature}"))
    assert (
        assert_problem(response, 401, "invalid-token", "invalid_token")["detail"]
        == "token signature is invalid"
    )


async def test_wrong_secret(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers=bearer(hs_token(secret="another-secret-another-secret-012345")))
    assert_problem(response, 401, "invalid-token", "invalid_token")


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "eyJ!!!.eyJ.sig", "e30.e30.e30", "@@@", "abc.d\u00e9f.ghi", "....", "Zm9v.YmFy"],
    ids=["no-dots", "bad-base64", "bad-chars", "empty-header", "symbols", "non-ascii", "dots", "two-parts"],
)
async def test_malformed_tokens_are_401(make_client: Any, token: str) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers={"Authorization": f"Bearer {token}".encode()})
    assert_problem(response, 401, "invalid-token", "invalid_token")


async def test_garbage_json_inside_valid_base64(make_client: Any) -> None:
    token = f"{b64(b'{not json')}.{b64(b'[1,2]')}.{b64(b'sig')}"
    client = make_client(build_app(JWT_ROUTE))
    assert_problem(await client.get("/r", headers=bearer(token)), 401, "invalid-token", "invalid_token")
    signed_list = jwt.api_jws.encode(b"[1, 2]", SECRET, algorithm="HS256")
    assert_problem(await client.get("/r", headers=bearer(signed_list)), 401, "invalid-token", "invalid_token")


async def test_missing_and_non_bearer_authorization(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    body = assert_problem(await client.get("/r"), 401, "missing-token", "invalid_request")
    assert body["detail"] == "a Bearer token is required"
    response = await client.get("/r", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert_problem(response, 401, "missing-token", "invalid_request")
    response = await client.get("/r", headers={"Authorization": "Bearer"})
    assert_problem(response, 401, "invalid-token", "invalid_token")
    lower = await client.get("/r", headers={"Authorization": f"bearer {hs_token()}"})
    assert lower.status_code == 200


async def test_oversized_authorization_header_is_400(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers={"Authorization": "Bearer " + "a" * 10_240})
    body = assert_problem(response, 400, "invalid-authorization", "invalid_request")
    assert body["detail"] == "Authorization header is too long"


async def test_two_authorization_headers_are_400(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    headers = [("Authorization", f"Bearer {hs_token()}"), ("Authorization", f"Bearer {hs_token(sub='bob')}")]
    assert_problem(await client.get("/r", headers=headers), 400, "invalid-authorization", "invalid_request")


async def test_missing_scope_is_403_insufficient_scope(make_client: Any) -> None:
    route = {**JWT_ROUTE, "user_permissions_required": ["jobs:read", "jobs:admin"]}
    client = make_client(build_app(route))
    response = await client.get("/r", headers=bearer(hs_token()))
    body = assert_problem(response, 403, "insufficient-scope", "insufficient_scope")
    assert body["required_scopes"] == ["jobs:admin", "jobs:read"]
    assert 'scope="jobs:admin jobs:read"' in response.headers["www-authenticate"]
    granted = hs_token(scope="jobs:read jobs:admin")
    assert (await client.get("/r", headers=bearer(granted))).status_code == 200


async def test_profile_scope_is_also_required(make_client: Any) -> None:
    client = make_client(build_app({**JWT_ROUTE, "user_profile_scope_required": "profile"}))
    response = await client.get("/r", headers=bearer(hs_token()))
    assert_problem(response, 403, "insufficient-scope", "insufficient_scope")
    assert (await client.get("/r", headers=bearer(hs_token(scope="profile")))).status_code == 200


async def test_roles_any_is_the_default(make_client: Any) -> None:
    client = make_client(build_app({**JWT_ROUTE, "permission_roles_required": ["admin", "auditor"]}))
    assert (await client.get("/r", headers=bearer(hs_token(roles=["auditor"])))).status_code == 200
    response = await client.get("/r", headers=bearer(hs_token(roles=["viewer"])))
    body = assert_problem(response, 403, "insufficient-role")
    assert body["required_roles"] == ["admin", "auditor"]
    assert body["roles_match"] == "any"
    assert_problem(await client.get("/r", headers=bearer(hs_token(roles=None))), 403, "insufficient-role")


async def test_roles_all(make_client: Any) -> None:
    route = {**JWT_ROUTE, "permission_roles_required": ["admin", "db_user"], "roles_match": "all"}
    client = make_client(build_app(route))
    assert (await client.get("/r", headers=bearer(hs_token()))).status_code == 200
    response = await client.get("/r", headers=bearer(hs_token(roles=["admin"])))
    assert assert_problem(response, 403, "insufficient-role")["roles_match"] == "all"


async def test_rs256_ps256_es256_and_eddsa_with_a_public_key(
    make_client: Any, rsa_key: KeyPair, ec_key: KeyPair
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    client = make_client(build_app(JWT_ROUTE, rs_settings(rsa_key, jwt_algorithms=["RS256", "PS256"])))
    assert (await client.get("/r", headers=bearer(rsa_key.token()))).status_code == 200
    ps = KeyPair(rsa_key.private, "rsa-1", "PS256")
    assert (await client.get("/r", headers=bearer(ps.token()))).status_code == 200
    es_client = make_client(build_app(JWT_ROUTE, rs_settings(ec_key)))
    assert (await es_client.get("/r", headers=bearer(ec_key.token()))).status_code == 200
    # An EC token against the RSA key: the algorithm is not allowed there.
    assert_problem(
        await client.get("/r", headers=bearer(ec_key.token())), 401, "invalid-token", "invalid_token"
    )
    ed = KeyPair(ed25519.Ed25519PrivateKey.generate(), "ed-1", "EdDSA")
    ed_client = make_client(build_app(JWT_ROUTE, rs_settings(ed)))
    assert (await ed_client.get("/r", headers=bearer(ed.token()))).status_code == 200
    other = KeyPair(ed25519.Ed25519PrivateKey.generate(), "ed-2", "EdDSA")
    assert_problem(
        await ed_client.get("/r", headers=bearer(other.token())), 401, "invalid-token", "invalid_token"
    )


async def test_anonymous_route_and_unguarded_route(make_client: Any) -> None:
    client = make_client(build_app({"ip_whitelist_enabled": True, "ip_allowlist": ["127.0.0.0/8"]}))
    response = await client.get("/r")
    assert response.status_code == 200
    assert response.json()["sub"] is None
    assert response.json()["user_key"] == "127.0.0.1"


async def test_alg_none_in_settings_is_a_config_error() -> None:
    # added with app.add_middleware, the error surfaces as a failed lifespan start-up (the server exits)
    app = build_app(JWT_ROUTE, hs_settings(jwt_algorithms=["HS256", "none"]))
    messages = [{"type": "lifespan.startup"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with pytest.raises(ConfigError, match="none"):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed" and "none" in sent[0]["message"]


def test_jwt_route_without_any_key_is_a_config_error() -> None:
    registry = RouteRegistry()
    registry.register("/r", JobConfig(security={"auth_type_required": "JWT"}))
    with pytest.raises(ConfigError, match="requires a JWT"):
        GuardMiddleware(lambda *a: None, registry=registry, settings=GuardSettings(jwt_algorithms=["RS256"]))


@pytest.mark.parametrize("secret", ["x", "short-secret", "y" * 31, "é" * 15])
def test_an_hmac_secret_under_32_bytes_is_a_config_error(secret: str) -> None:
    """RFC 7518 section 3.2: an HS256 key MUST be at least as long as the hash output (32 bytes);
    a short one is brute-forced offline from any token. Refused at start-up, not warned about."""
    registry = RouteRegistry()
    registry.register("/r", JobConfig(security={"auth_type_required": "JWT"}))
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        GuardMiddleware(lambda *a: None, registry=registry, settings=hs_settings(jwt_secret=secret))


def test_a_short_secret_is_fine_when_no_hmac_algorithm_is_allowed(rsa_key: KeyPair) -> None:
    registry = RouteRegistry()
    registry.register("/r", JobConfig(security={"auth_type_required": "JWT"}))
    settings = rs_settings(rsa_key, jwt_secret="short")
    GuardMiddleware(lambda *a: None, registry=registry, settings=settings)


async def test_token_audience_without_configured_audience(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE, hs_settings(jwt_audience=None, jwt_issuer=None)))
    assert (await client.get("/r", headers=bearer(hs_token(aud=None)))).status_code == 200
    response = await client.get("/r", headers=bearer(hs_token(aud=AUDIENCE)))
    assert_problem(response, 401, "invalid-token", "invalid_token")


async def test_random_garbage_is_never_a_500(make_client: Any) -> None:
    rng = random.Random(1234)
    alphabet = string.ascii_letters + string.digits + "-_.~+/=" + "\"\\ ,;{}[]:'\x7f\x00\xff"
    real = hs_token()
    client = make_client(build_app({**JWT_ROUTE, "mfa_required": True}))
    for n in range(300):
        if n % 3 == 0:  # mutate one character of a real token
            i = rng.randrange(len(real))
            value = "Bearer " + real[:i] + rng.choice(alphabet) + real[i + 1 :]
        elif n % 3 == 1:
            value = "Bearer " + ".".join(
                "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
                for _ in range(rng.randrange(1, 5))
            )
        else:
            value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        headers = [(b"authorization", value.encode("latin-1")), (b"x-mfa-totp", value[:8].encode("latin-1"))]
        response = await client.get("/r", headers=headers)
        assert 400 <= response.status_code < 500, (value, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_algorithm_of_another_key_family_is_401_not_500(
    make_client: Any, rsa_key: KeyPair, ec_key: KeyPair
) -> None:
    settings = rs_settings(ec_key, jwt_algorithms=["RS256", "PS256", "ES256", "ES384", "EdDSA"])
    client = make_client(build_app(JWT_ROUTE, settings))
    for token in (rsa_key.token(), KeyPair(rsa_key.private, "p", "PS256").token()):
        response = await client.get("/r", headers=bearer(token))
        assert assert_problem(response, 401, "invalid-token", "invalid_token")["detail"].endswith(
            "is not accepted"
        )
    payload = ec_key.token().split(".")[1]
    for alg in ("ES384", "EdDSA"):
        forged_header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        for signature in (b"", b"x" * 64, b"y" * 96, b"z" * 512):
            token = f"{forged_header}.{payload}.{b64(signature)}"
            assert_problem(
                await client.get("/r", headers=bearer(token)), 401, "invalid-token", "invalid_token"
            )
    assert (await client.get("/r", headers=bearer(ec_key.token()))).status_code == 200
