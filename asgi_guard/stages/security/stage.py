"""Stage 2: IP allowlist, JWT, scopes and roles, MFA - cheapest check first.

Everything a route needs (its networks, the shared verifier, the required scope set, the header
names) is prepared once here in `__init__`; a request with a cached token costs a header scan, a hash
and a few set operations.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, NoReturn

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext, Principal
from asgi_guard.core.errors import BackendUnavailable, ConfigError
from asgi_guard.core.problems import Problem, backend_unavailable
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.security.ip import IpAllowlist
from asgi_guard.stages.security.jwks import JwksUnavailable
from asgi_guard.stages.security.jwt import TokenError, TokenVerifier, shared_set
from asgi_guard.stages.security.mfa import TotpChecker, load_resolver, resolve_secret, totp_store
from asgi_guard.stages.security.store import LOCKED, REPLAYED, TotpStore

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.security.config import SecurityConfig

log = logging.getLogger("asgi_guard.security")

_AUTHORIZATION = b"authorization"
_TOKEN68 = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_REALM = 'Bearer realm="asgi-guard"'
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def www_authenticate(error: str | None = None, description: str = "", **params: str) -> tuple[bytes, bytes]:
    """An RFC 6750 challenge; quoted values keep to the characters the grammar allows."""
    parts = [_REALM]
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_UNSAFE.sub("", description)}"')
    parts += [f'{name}="{_UNSAFE.sub("", value)}"' for name, value in params.items()]
    return b"www-authenticate", ", ".join(parts).encode()


class SecurityMiddleware(Stage["SecurityConfig"]):
    """Rejects with 401/403 (400 for a garbled Authorization header, 503 when keys cannot be had)."""

    name = "security"
    section = "security"

    def __init__(self, app: ASGIApp, route: RouteInfo[SecurityConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        sec = self.config
        self._label = route.label
        self._allowlist = IpAllowlist(sec.ip_allowlist) if sec.ip_whitelist_enabled else None
        self._verifier: TokenVerifier | None = None
        if sec.requires_token:
            self._verifier = TokenVerifier.for_runtime(runtime)
            if not self._verifier.algorithms:
                raise ConfigError(
                    f"route {route.template!r} requires a JWT, but no key in GuardSettings (jwt_secret, "
                    f"jwt_public_key, jwks_url) fits jwt_algorithms {runtime.settings.jwt_algorithms}"
                )
        self._max_auth = sec.max_authorization_length
        self._required_claims = tuple(c for c in sec.required_claims if c != "sub")
        self._scopes = sec.required_scopes
        self._scope_text = " ".join(sorted(self._scopes))
        self._roles = shared_set(frozenset(sec.permission_roles_required))  # one object for many routes
        self._roles_all = sec.roles_match == "all"
        self._mfa = sec.mfa_required
        self._mfa_amr = shared_set(frozenset(sec.mfa_amr_values))
        self._totp_header = sec.mfa_totp_header.encode()
        runtime.redactor.add_headers([sec.mfa_totp_header])  # a step-up code is a secret in every log
        self._resolver = load_resolver(sec.mfa_totp_resolver, runtime) if sec.mfa_required else None
        self._totp: TotpChecker | None = None
        self._guard: TotpStore | None = None
        self._max_failures = sec.mfa_totp_max_failures
        if self._resolver is not None:
            backend = self.backend
            self._totp = TotpChecker(
                sec.mfa_totp_digits, sec.mfa_totp_step, sec.mfa_totp_drift, backend.clock
            )
            step_ttl = sec.mfa_totp_step * (2 * sec.mfa_totp_drift + 2)
            self._guard = totp_store(backend, step_ttl, sec.mfa_totp_max_failures, sec.mfa_totp_lockout)
        self._faults = runtime.metrics.backend_faults

    @classmethod
    def enabled_for(cls, config: SecurityConfig) -> bool:
        return bool(config.auth_type_required) or config.ip_whitelist_enabled

    @classmethod
    def needs_body(cls, config: SecurityConfig) -> bool:
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        if self._allowlist is not None and not self._allowlist.allows(ctx.client_ip):
            self._reject(ctx, Problem(403, "ip-not-allowed", "Forbidden", "client address is not allowed"))
        verifier = self._verifier
        if verifier is None:
            ctx.decide(self.name, "allowed", ip_allowed=True, authenticated=False)
            await self.app(scope, receive, send)
            return

        authorization: bytes | None = None
        totp: bytes | None = None
        several = False
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                several = authorization is not None
                authorization = value
            elif name == self._totp_header:
                totp = value
        raw = self._bearer(ctx, authorization, several)
        principal = verifier.cached(raw)
        if principal is None:
            principal = await self._verify(ctx, verifier, raw)
        for claim in self._required_claims:
            if claim not in principal.claims:
                self._unauthorized(ctx, "invalid-token", f"token lacks the {claim} claim", "invalid_token")
        ctx.principal = principal
        self._authorize(ctx, principal)
        mfa = "not_required"
        if self._mfa:
            ctx.principal, mfa = await self._multi_factor(ctx, principal, totp)
        ctx.decide(self.name, "allowed", ip_allowed=True, authenticated=True, mfa=mfa)
        await self.app(scope, receive, send)

    # -- steps ----------------------------------------------------------------------------------
    def _bearer(self, ctx: GuardContext, authorization: bytes | None, several: bool) -> bytes:
        """The raw token of a well-formed `Authorization: Bearer` header."""
        if authorization is None:
            self._unauthorized(ctx, "missing-token", "a Bearer token is required", "invalid_request")
        if several or len(authorization) > self._max_auth:
            detail = "several Authorization headers" if several else "Authorization header is too long"
            self._bad_request(ctx, detail)
        scheme, _, raw = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            self._unauthorized(
                ctx, "missing-token", "Authorization must use the Bearer scheme", "invalid_request"
            )
        return raw.strip(b" ")

    async def _verify(self, ctx: GuardContext, verifier: TokenVerifier, raw: bytes) -> Principal:
        """A token not in the verified-token cache: check it fully (and cache it)."""
        if not _TOKEN68.fullmatch(raw):
            self._unauthorized(ctx, "invalid-token", "token is malformed", "invalid_token")
        try:
            return await verifier.verify(raw.decode("ascii"))
        except TokenError as exc:
            self._unauthorized(ctx, "invalid-token", exc.detail, exc.code)
        except JwksUnavailable as exc:
            log.warning("JWKS unavailable for %s: %s", self._label, exc)
            self._faults.labels(self._label, self.name).inc()
            self._reject(
                ctx,
                Problem(
                    503,
                    "jwks-unavailable",
                    "Service Unavailable",
                    "the signing keys cannot be fetched right now",
                    headers=[(b"retry-after", b"1")],
                ),
            )

    def _authorize(self, ctx: GuardContext, principal: Principal) -> None:
        if self._scopes and not self._scopes <= principal.scopes:
            self._reject(
                ctx,
                Problem(
                    403,
                    "insufficient-scope",
                    "Forbidden",
                    f"token lacks a required scope ({self._scope_text})",
                    headers=[www_authenticate("insufficient_scope", "", scope=self._scope_text)],
                    extra={"required_scopes": sorted(self._scopes)},
                ),
            )
        roles = self._roles
        if roles:
            held = principal.roles
            ok = roles <= held if self._roles_all else not roles.isdisjoint(held)
            if not ok:
                self._reject(
                    ctx,
                    Problem(
                        403,
                        "insufficient-role",
                        "Forbidden",
                        ("every" if self._roles_all else "one") + " of the required roles is needed",
                        extra={
                            "required_roles": sorted(roles),
                            "roles_match": "all" if self._roles_all else "any",
                        },
                    ),
                )

    async def _multi_factor(
        self, ctx: GuardContext, principal: Principal, totp: bytes | None
    ) -> tuple[Principal, str]:
        if not principal.amr.isdisjoint(self._mfa_amr):
            return principal, "amr"
        if totp is None or self._totp is None or self._resolver is None or self._guard is None:
            self._mfa_required(ctx, "multi-factor authentication is required", "mfa_missing")
        code = totp.decode("latin-1").strip()
        if not self._totp.well_formed(code):
            self._mfa_required(ctx, "the TOTP code is malformed", "totp_invalid")
        try:
            secret = await resolve_secret(self._resolver, principal.subject)
        except Exception as exc:  # noqa: BLE001 - a broken resolver is our fault: 503, never 500
            log.error("TOTP secret resolver failed for %s: %s", self._label, exc)
            self._reject(
                ctx, Problem(503, "mfa-unavailable", "Service Unavailable", "MFA cannot be checked now")
            )
        if secret is None:
            self._mfa_required(ctx, "no TOTP factor is enrolled for this subject", "totp_not_enrolled")
        guard = self._guard
        subject = principal.subject
        counter = self._totp.counter_of(secret, code)
        try:
            if counter is None:
                failures, retry_after = await guard.fail(subject)
                if self._max_failures and failures > self._max_failures:
                    self._locked_out(ctx, retry_after)
                self._mfa_required(ctx, "the TOTP code is wrong or expired", "totp_invalid")
            outcome, retry_after = await guard.claim(subject, counter)
        except BackendUnavailable as exc:
            log.warning("TOTP replay store unavailable for %s: %s", self._label, exc)
            self._faults.labels(self._label, self.name).inc()
            self._reject(ctx, backend_unavailable(self.name))
        if outcome == LOCKED:
            self._locked_out(ctx, retry_after)
        if outcome == REPLAYED:
            self._mfa_required(ctx, "the TOTP code was already used", "totp_replayed")
        return dataclasses.replace(principal, amr=principal.amr | {"otp"}), "totp"

    # -- rejections -----------------------------------------------------------------------------
    def _locked_out(self, ctx: GuardContext, retry_after: int) -> NoReturn:
        problem = Problem(
            429,
            "mfa-locked",
            "Too Many Requests",
            "too many wrong TOTP codes; try again later",
            headers=[(b"retry-after", str(retry_after).encode())],
            extra={"reason": "totp_locked"},
        )
        self._reject(ctx, problem, "totp_locked")

    def _reject(self, ctx: GuardContext, problem: Problem, reason: str | None = None) -> NoReturn:
        ctx.decide(self.name, "rejected", reason or problem.slug.replace("-", "_"))
        raise problem

    def _unauthorized(self, ctx: GuardContext, slug: str, detail: str, code: str) -> NoReturn:
        title = "Unauthorized"
        self._reject(ctx, Problem(401, slug, title, detail, headers=[www_authenticate(code, detail)]))

    def _bad_request(self, ctx: GuardContext, detail: str) -> NoReturn:
        header = www_authenticate("invalid_request", detail)
        self._reject(ctx, Problem(400, "invalid-authorization", "Bad Request", detail, headers=[header]))

    def _mfa_required(self, ctx: GuardContext, detail: str, reason: str) -> NoReturn:
        header = www_authenticate("insufficient_user_authentication", detail)
        problem = Problem(
            401,
            "mfa-required",
            "Multi-Factor Authentication Required",
            detail,
            headers=[header],
            extra={"reason": reason},
        )
        self._reject(ctx, problem, reason)
