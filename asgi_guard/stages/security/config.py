"""Security policy (stage 2). Safe defaults: anonymous, no MFA, no allowlist.

Keys, issuer, audience, algorithms and trusted proxies are global secrets and live in GuardSettings;
what a route demands of its callers lives here.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from asgi_guard.core.model import GuardModel

#: Every `auth_type_required` spelling that means "a Bearer JWT in Authorization".
BEARER_AUTH_TYPES = frozenset({"jwt", "bearer", "oauth2", "oidc"})

#: RFC 8176 `amr` values that name a factor beyond a password (a second factor, or MFA itself).
DEFAULT_MFA_AMR = [
    "mfa",
    "mca",
    "otp",
    "hwk",
    "swk",
    "sc",
    "sms",
    "tel",
    "fpt",
    "face",
    "iris",
    "retina",
    "vbm",
]


class SecurityConfig(GuardModel):
    auth_type_required: str | None = Field(
        default=None,
        description='"jwt" (or "bearer", "oauth2", "oidc"; any case) needs a Bearer JWT; unset = anonymous',
    )
    user_permissions_required: list[str] = Field(default=[], description="scopes, all required")
    permission_roles_required: list[str] = Field(default=[], description="roles, combined by roles_match")
    roles_match: Literal["any", "all"] = Field(
        default="any", description='"any": one listed role suffices (default); "all": every one is needed'
    )
    mfa_required: bool = Field(
        default=False, description="require a second factor: an `amr` claim or a step-up TOTP code"
    )
    user_profile_scope_required: str | None = Field(default=None, description="one more required scope")
    ip_whitelist_enabled: bool = Field(
        default=False, description="only clients in `ip_allowlist` may call the route"
    )
    ip_allowlist: list[str] = Field(default=[], description="CIDRs or addresses, IPv4 and IPv6")
    required_claims: list[str] = Field(
        default=["exp"], description="claims a token must carry (sub is always required)"
    )
    mfa_amr_values: list[str] = Field(
        default=DEFAULT_MFA_AMR, description="amr values (RFC 8176) that satisfy mfa_required"
    )
    mfa_totp_header: str = Field(default="x-mfa-totp", description="header carrying a step-up TOTP code")
    mfa_totp_resolver: str | None = Field(
        default=None,
        description='"module:function" returning the base32 TOTP secret of a subject; '
        'else the runtime service "totp_secret_resolver"',
    )
    mfa_totp_digits: int = Field(default=6, ge=6, le=8, description="digits of a step-up TOTP code")
    mfa_totp_step: int = Field(default=30, ge=1, description="seconds per TOTP step")
    mfa_totp_drift: int = Field(default=1, ge=0, le=5, description="steps of clock drift accepted either way")
    mfa_totp_max_failures: int = Field(
        default=5, ge=0, description="wrong codes per subject before a lock-out (0 = never lock out)"
    )
    mfa_totp_lockout: int = Field(
        default=300, ge=1, description="seconds the wrong-code window and lock-out last"
    )
    max_authorization_length: int = Field(
        default=8192, ge=64, description="longer Authorization headers are a 400"
    )

    @field_validator("auth_type_required", mode="before")
    @classmethod
    def _auth_type(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            return value
        value = value.strip().lower()
        if not value or value == "none":
            return None
        if value not in BEARER_AUTH_TYPES:
            raise ValueError(
                f"unsupported auth_type_required {value!r}; use one of {sorted(BEARER_AUTH_TYPES)}"
            )
        return "jwt"

    @field_validator("ip_allowlist")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"ip_allowlist entry {entry!r} is not an address or CIDR") from exc
        return value

    @field_validator("mfa_totp_header")
    @classmethod
    def _header(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("mfa_totp_header must be a plain header name")
        return value

    @field_validator("mfa_totp_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":") or value.endswith(":")):
            raise ValueError('mfa_totp_resolver must read "package.module:function"')
        return value

    @model_validator(mode="after")
    def _coherent(self) -> SecurityConfig:
        if self.ip_whitelist_enabled and not self.ip_allowlist:
            raise ValueError("ip_whitelist_enabled needs a non-empty ip_allowlist")
        if self.auth_type_required is None and (
            self.user_permissions_required
            or self.permission_roles_required
            or self.mfa_required
            or self.user_profile_scope_required
        ):
            raise ValueError(
                "scopes, roles and MFA need an authenticated caller: set auth_type_required (e.g. 'jwt')"
            )
        return self

    @property
    def requires_token(self) -> bool:
        return self.auth_type_required is not None

    @property
    def required_scopes(self) -> frozenset[str]:
        """`user_permissions_required` plus `user_profile_scope_required`: every one must be granted."""
        scopes = set(self.user_permissions_required)
        if self.user_profile_scope_required:
            scopes.add(self.user_profile_scope_required)
        return frozenset(scopes)
