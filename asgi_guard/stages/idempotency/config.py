"""Idempotency-Key policy (stage 4)."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel


class IdempotencyConfig(GuardModel):
    enabled: bool = Field(default=False, description="turn stage 4 on: honour the Idempotency-Key header")
    ttl: int = Field(default=86_400, ge=1, description="seconds a finished response is replayed")
    max_key_length: int = Field(default=255, ge=1, description="longer keys are a 400")
    fail_open: bool = Field(default=False, description="store down: run without idempotency (False: 503)")
    required: bool = Field(default=False, description="a request without the header is a 400")
    lock_ttl: int = Field(
        default=60, ge=1, description="seconds a first attempt holds the key (frees keys of crashed workers)"
    )
    max_response_size: int = Field(
        default=1_048_576, ge=0, description="larger responses are not stored; the key is released"
    )
