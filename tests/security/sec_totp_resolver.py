"""A TOTP secret resolver named by import path in a route's config (`sec_totp_resolver:lookup`)."""

from __future__ import annotations

SECRETS = {"alice": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}


async def lookup(subject: str) -> str | None:
    return SECRETS.get(subject)
