"""Hardening (issue 13, case 5): NumericDate claims (exp, nbf, iat) must be JSON numbers in a sane
range; anything else is 401 invalid_token, never a 500, and never cached past the real expiry."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seckit import SECRET, assert_problem, bearer, build_app, claims, hs_settings

from asgi_guard.stages.security.jwt import TokenError, TokenVerifier

JWT_ROUTE = {"auth_type_required": "jwt"}


def _signed(payload: dict[str, Any]) -> str:
    """HS256 over an arbitrary JSON payload (pyjwt's encode would refuse or convert odd claim types)."""
    return jwt.api_jws.encode(json.dumps(payload).encode(), SECRET, algorithm="HS256")


def _raw_signed(payload_json: str) -> str:
    return jwt.api_jws.encode(payload_json.encode(), SECRET, algorithm="HS256")


BAD_DATES: list[Any] = [
    "9" * 401,  # a string of digits
    str(int(time.time()) + 300),
    10**400,
    -1,
    True,
    None,
    [1],
    {"t": 1},
    1e300,
    253402300800 + 1,  # past the year 9999
]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", BAD_DATES, ids=lambda v: repr(v)[:20])
async def test_non_numeric_or_absurd_dates_are_401(make_client: Any, claim: str, value: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    token = _signed(claims(**{claim: value}) | ({claim: None} if value is None else {}))
    response = await client.get("/r", headers=bearer(token))
    assert_problem(response, 401, "invalid-token", "invalid_token")


async def test_huge_exp_literal_is_401_not_500(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    base = claims()
    base.pop("exp")
    payload = json.dumps(base)[:-1] + ', "exp": ' + "9" * 401 + "}"
    response = await client.get("/r", headers=bearer(_raw_signed(payload)))
    assert_problem(response, 401, "invalid-token", "invalid_token")
    infinite = json.dumps(base)[:-1] + ', "exp": 1e400}'
    response = await client.get("/r", headers=bearer(_raw_signed(infinite)))
    assert_problem(response, 401, "invalid-token", "invalid_token")


async def test_a_string_exp_is_never_cached_past_expiry() -> None:
    now = [time.time()]
    verifier = TokenVerifier(hs_settings(), clock=lambda: now[0])
    token = _signed(claims(exp=str(int(now[0]) + 5)))
    with pytest.raises(TokenError):
        await verifier.verify(token)
    assert verifier.cached(token.encode()) is None


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    value=st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    ),
    claim=st.sampled_from(["exp", "nbf", "iat"]),
)
async def test_any_date_value_gives_a_principal_or_a_token_error(value: Any, claim: str) -> None:
    now = time.time()
    verifier = TokenVerifier(hs_settings(), clock=lambda: now)
    token = _signed(claims(**{claim: value}) if value is not None else claims())
    try:
        principal = await verifier.verify(token)
    except TokenError:
        return
    assert principal.subject == "alice"
    exp = principal.claims["exp"]
    assert type(exp) in (int, float) and exp > now - 1
    entry = next(iter(verifier._cache.values()))
    assert entry.until <= float(exp) + hs_settings().jwt_leeway + 0.001, (
        "cached no longer than pyjwt accepts it"
    )


async def test_a_subject_with_a_lone_surrogate_is_401(make_client: Any) -> None:
    client = make_client(build_app(JWT_ROUTE))
    response = await client.get("/r", headers=bearer(_signed(claims(sub="\ud800"))))
    assert_problem(response, 401, "invalid-token", "invalid_token")
