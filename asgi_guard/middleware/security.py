"""Stage 2: IP allowlist, JWT, MFA, scopes and roles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class SecurityMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "security"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return bool(config.security.auth_type_required) or config.security.ip_whitelist_enabled

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return False
