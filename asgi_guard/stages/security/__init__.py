"""Security helpers: client address and allowlists (ip), Bearer JWTs (jwt, jwks), MFA (mfa).

What an app calls directly: `set_totp_secret_resolver(runtime, fn)` to plug in the per-user TOTP
secrets for step-up MFA. Everything else is driven by each route's SecurityConfig.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from asgi_guard.stages.security.mfa import set_totp_secret_resolver

__getattr__ = lazy_exports(__name__, {"set_totp_secret_resolver": "mfa"})

__all__ = ["set_totp_secret_resolver"]
