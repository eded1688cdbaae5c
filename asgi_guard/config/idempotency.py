"""Idempotency-Key policy (stage 4)."""

from __future__ import annotations

from pydantic import Field

from ._base import GuardModel


class IdempotencyConfig(GuardModel):
    enabled: bool = False
    ttl: int = Field(default=86_400, ge=1)
    max_key_length: int = Field(default=255, ge=1)
    fail_open: bool = False
