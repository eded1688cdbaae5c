"""Security policy (stage 2). Safe defaults: anonymous, no MFA, no allowlist."""

from __future__ import annotations

from pydantic import Field

from ._base import GuardModel


class SecurityConfig(GuardModel):
    auth_type_required: str | None = Field(default=None, description='"jwt" (Bearer) turns the stage on')
    user_permissions_required: list[str] = []
    permission_roles_required: list[str] = []
    mfa_required: bool = False
    user_profile_scope_required: str | None = None
    ip_whitelist_enabled: bool = False
