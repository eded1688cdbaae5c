"""Bearer JWT verification (pyjwt): explicit algorithm allow-list, one key source per family.

HS* tokens are only ever checked against `jwt_secret`, and RS/PS/ES/EdDSA tokens only against
`jwt_public_key` or the JWKS, so the HS/RS key-confusion trick (an HS256 token "signed" with the public
key) cannot work, and `alg: none` is refused before any key is looked at. Verified tokens are cached
by SHA-256 digest until they expire (at most 10 minutes), so a hot token costs one hash and a dict
lookup; the cache holds `GuardSettings.jwt_cache_size` entries (default 100,000; the oldest tenth is
dropped when full), enough for every active user of a large service. Memory per entry: 986 bytes for a
typical token (`sub`, `iat`, `exp`, `scope`, `roles`; the digest key, the entry, the Principal and its
claims dict, scope/role sets shared between users), measured with tracemalloc over 100,000 distinct
users by `python benchmarks/token_cache_bench.py` (94 MiB in all); an entry grows with its token's
claims, which `security.max_authorization_length` bounds. Per-request cost at 100,000 users is 1.01x
that at 1,000 (`benchmarks/users_bench.py`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from asgi_guard.core.context import Principal
from asgi_guard.core.errors import ConfigError
from asgi_guard.stages.security.jwks import JwksClient

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.core.settings import GuardSettings

log = logging.getLogger("asgi_guard.security")

#: Which key source verifies each algorithm pyjwt knows (HS only with the shared secret).
FAMILIES: dict[str, str] = {
    "HS256": "hmac",
    "HS384": "hmac",
    "HS512": "hmac",
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES256K": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "ES521": "EC",
    "EdDSA": "OKP",
}
VERIFIER_SERVICE = "security.verifier"
JWKS_SERVICE = "security.jwks"
_CACHE_MAX_TTL = 600.0
_DATE_CLAIMS = ("exp", "nbf", "iat")
_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z


class TokenError(Exception):
    """A token (or the Authorization header carrying it) the client must fix: a 401 (or 400)."""

    def __init__(self, detail: str, code: str = "invalid_token", status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    until: float


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """`claims[name]`, or a dotted path into nested objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


_SETS: dict[frozenset[str], frozenset[str]] = {}
_SETS_MAX = 4096


def shared_set(found: frozenset[str]) -> frozenset[str]:
    """One object per distinct scope/role set (users share a few: ~200 bytes saved per cached token)."""
    shared = _SETS.get(found)
    if shared is not None:
        return shared
    if len(_SETS) < _SETS_MAX:
        _SETS[found] = found
    return found


def _strings(value: Any) -> frozenset[str]:
    """A space-separated string or a list of strings as a set; anything else is empty."""
    if isinstance(value, str):
        return shared_set(frozenset(value.split()))
    if isinstance(value, (list, tuple)):
        return shared_set(frozenset(item for item in value if isinstance(item, str)))
    return frozenset()


def _compact(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims with their names interned (each parse makes new key strings; cached tokens share)."""
    return {sys.intern(key) if len(key) <= 32 else key: value for key, value in claims.items()}


def principal_from_claims(claims: dict[str, Any], roles_claim: str) -> Principal:
    """Subject, scopes (`scope` or `scp`), roles (the configured claim), `amr`."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("token has no subject (sub)")
    if not subject.isascii():
        try:
            subject.encode()
        except UnicodeEncodeError:  # "\ud800": not text; it would crash every key built from it
            raise TokenError("token subject (sub) is not valid text") from None
    scopes = _strings(claims.get("scope"))
    if not scopes:
        scopes = _strings(claims.get("scp"))
    return Principal(
        subject=subject,
        scopes=scopes,
        roles=_strings(_claim(claims, roles_claim)),
        amr=_strings(claims.get("amr")),
        claims=_compact(claims),
    )


def load_public_key(text: str) -> Any:
    """A PEM public key, a PEM certificate or a JWK (JSON) as a cryptography public key."""
    data = text.strip()
    try:
        if data.startswith("{"):
            return jwt.PyJWK.from_json(data).key
        if "BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data.encode()).public_key()
        return serialization.load_pem_public_key(data.encode())
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConfigError(
            f"GuardSettings.jwt_public_key is not a PEM public key, certificate or JWK: {exc}"
        ) from exc


def _text(value: Any) -> str | None:
    """A SecretStr's value (a plain str too: `model_copy(update=...)` skips validation)."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _key_family(key: Any) -> str | None:
    """ "RSA", "EC" or "OKP" for a public key object (None for no key)."""
    if key is None:
        return None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "OKP"
    raise ConfigError(f"GuardSettings.jwt_public_key: unsupported key type {type(key).__name__}")


def _describe(exc: jwt.PyJWTError) -> str:
    """A short, safe reason for the client (never the key or the token)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not yet valid"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not accepted"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature is invalid"
    if isinstance(exc, (jwt.InvalidAlgorithmError, jwt.InvalidKeyError)):
        return "token algorithm does not match the key"
    return "token is malformed"


def _check_dates(claims: Mapping[str, Any]) -> None:
    """`exp`, `nbf` and `iat`, when present, are NumericDates (RFC 7519 section 2): JSON numbers, here
    also finite and between 0 and the end of year 9999. pyjwt alone accepts `"exp": "<digits>"` (it
    calls int() on it) and any huge integer; either would then be cached or overflow a float."""
    for name in _DATE_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if type(value) not in (int, float) or not 0 <= value <= _MAX_NUMERIC_DATE:  # NaN fails too
            raise TokenError(f"token {name} claim is not a NumericDate")


class TokenVerifier:
    """One per app (a runtime service): key material, allow-list and the verified-token cache."""

    def __init__(
        self,
        settings: GuardSettings,
        jwks: JwksClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int | None = None,
    ) -> None:
        algorithms = list(dict.fromkeys(settings.jwt_algorithms))
        for alg in algorithms:
            if alg.lower() == "none":
                raise ConfigError("GuardSettings.jwt_algorithms must not contain 'none'")
            if alg not in FAMILIES:
                raise ConfigError(f"GuardSettings.jwt_algorithms: unknown algorithm {alg!r}")
        secret, public = _text(settings.jwt_secret), _text(settings.jwt_public_key)
        self._secret = secret.encode() if secret else None
        self._public = load_public_key(public) if public else None
        self._public_family = _key_family(self._public)
        self._jwks = jwks
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway
        self._roles_claim = settings.jwt_roles_claim
        self._clock = clock
        self._cache: dict[bytes, _Cached] = {}
        # None: the app's setting (100,000 by default; ~1 KB per entry, see GuardSettings.jwt_cache_size)
        self._cache_size = settings.jwt_cache_size if cache_size is None else cache_size
        self.algorithms = frozenset(a for a in algorithms if self._has_key(FAMILIES[a]))
        if (
            self._secret is not None
            and len(self._secret) < 32
            and any(FAMILIES[a] == "hmac" for a in algorithms)
        ):
            # RFC 7518 section 3.2: a key at least as long as the hash output; a shorter one is
            # found offline from any token it signed
            raise ConfigError(
                f"GuardSettings.jwt_secret has {len(self._secret)} bytes; HS256 needs at least 32 bytes "
                "(RFC 7518 section 3.2), e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )

    def _has_key(self, family: str) -> bool:
        if family == "hmac":
            return self._secret is not None
        return self._public_family == family or self._jwks is not None

    @classmethod
    def for_runtime(cls, runtime: GuardRuntime) -> TokenVerifier:
        """The app's shared verifier (and its JWKS client, prefetched at start-up)."""
        settings = runtime.settings

        def jwks_factory() -> JwksClient:
            client = JwksClient(settings.jwks_url or "")
            _prefetch_at_startup(runtime, client)
            return client

        def factory() -> TokenVerifier:
            jwks = runtime.service(JWKS_SERVICE, jwks_factory) if settings.jwks_url else None
            return cls(settings, jwks)

        return runtime.service(VERIFIER_SERVICE, factory)

    def cached(self, token: bytes) -> Principal | None:
        """The principal of a token verified before and not yet expired (the hot path: no await)."""
        entry = self._cache.get(hashlib.sha256(token).digest())
        if entry is not None and entry.until > self._clock():
            return entry.principal
        return None

    async def verify(self, token: str) -> Principal:
        """The token's principal, or TokenError; JwksUnavailable when the key set cannot be had."""
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            if cached.until > now:
                return cached.principal
            del self._cache[digest]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("token is malformed") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenError(f"token algorithm {str(alg)[:16]!r} is not accepted")
        key = await self._key(alg, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"verify_sub": True, "verify_jti": True},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(_describe(exc)) from exc
        except OverflowError as exc:  # a date such as 1e400 (JSON gives inf; int(inf) overflows)
            raise TokenError("token date claims must be NumericDate numbers") from exc
        except (TypeError, ValueError) as exc:  # a key/algorithm pairing pyjwt did not expect
            raise TokenError("token algorithm does not match the key") from exc
        _check_dates(claims)
        principal = principal_from_claims(claims, self._roles_claim)
        self._remember(digest, principal, claims.get("exp"), now)
        return principal

    async def _key(self, alg: str, kid: Any) -> Any:
        family = FAMILIES[alg]
        if family == "hmac":
            return self._secret
        if kid is not None and not isinstance(kid, str):
            raise TokenError("token kid is not a string")
        if self._jwks is not None and (kid is not None or self._public is None):
            found = await self._jwks.key(kid, alg)
            if found is None:
                if kid is None:
                    raise TokenError("token has no key id (kid) and the key set holds several keys")
                raise TokenError("token key id (kid) is unknown")
            return found
        if self._public_family != family:
            raise TokenError("token algorithm does not match the key")
        return self._public

    def _remember(self, digest: bytes, principal: Principal, exp: Any, now: float) -> None:
        until = now + _CACHE_MAX_TTL
        if exp is not None:  # a NumericDate by now (_check_dates)
            until = min(until, float(exp) + self._leeway)
        if until <= now or self._cache_size <= 0:
            return
        cache = self._cache
        if len(cache) >= self._cache_size:
            for stale in list(cache)[: max(1, self._cache_size // 10)]:
                del cache[stale]
        cache[digest] = _Cached(principal, until)


def _prefetch_at_startup(runtime: GuardRuntime, client: JwksClient) -> None:
    """Warm the key set at start-up so the first request does not wait; a failure is only logged."""

    async def prefetch() -> None:
        await client.prefetch()

    with contextlib.suppress(RuntimeError):  # already started: the first request fetches instead
        runtime.on_startup(prefetch)
