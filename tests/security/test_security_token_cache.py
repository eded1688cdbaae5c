"""The verified-token cache: bounded by `GuardSettings.jwt_cache_size`, shared sets, off at 0."""

from __future__ import annotations

import time

import jwt

from asgi_guard import GuardSettings
from asgi_guard.stages.security.jwt import TokenVerifier

SECRET = "token-cache-secret-0123456789abcdef"


def settings(**extra: object) -> GuardSettings:
    return GuardSettings(_env_file=None, jwt_secret=SECRET, jwt_algorithms=["HS256"], **extra)  # type: ignore[call-arg,arg-type]


def tokens(n: int) -> list[str]:
    exp = int(time.time()) + 600
    return [jwt.encode({"sub": f"u{i}", "exp": exp, "scope": "a b"}, SECRET, "HS256") for i in range(n)]


async def test_default_holds_a_hundred_thousand_users() -> None:
    assert settings().jwt_cache_size == 100_000
    assert TokenVerifier(settings())._cache_size == 100_000


async def test_cache_stays_within_its_size_and_keeps_answering() -> None:
    verifier = TokenVerifier(settings(jwt_cache_size=50))
    issued = tokens(120)
    for token in issued:
        assert (await verifier.verify(token)).subject.startswith("u")
        assert len(verifier._cache) <= 50
    assert verifier.cached(issued[-1].encode()) is not None  # the newest stay
    assert verifier.cached(issued[0].encode()) is None  # the oldest went
    assert (await verifier.verify(issued[0])).subject == "u0"  # and are verified again


async def test_scope_sets_are_shared_between_cached_tokens() -> None:
    verifier = TokenVerifier(settings())
    first, second = [await verifier.verify(token) for token in tokens(2)]
    assert first.scopes == {"a", "b"}
    assert first.scopes is second.scopes


async def test_size_zero_turns_the_cache_off() -> None:
    verifier = TokenVerifier(settings(jwt_cache_size=0))
    (token,) = tokens(1)
    assert (await verifier.verify(token)).subject == "u0"
    assert verifier.cached(token.encode()) is None
    assert not verifier._cache


async def test_a_tampered_token_is_never_served_from_the_cache() -> None:
    verifier = TokenVerifier(settings())
    (token,) = tokens(1)
    await verifier.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}AA"
    assert verifier.cached(forged.encode()) is None
