"""Stage 10: field-level encryption of request and response JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Stage

if TYPE_CHECKING:
    from ..config import JobConfig


class EncryptionMiddleware(Stage):
    """Placeholder until its issue lands: configured by the registry, passes requests through."""

    name = "encryption"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return config.encryption.enable_encryption or config.encryption.enable_decryption

    @classmethod
    def needs_body(cls, config: JobConfig) -> bool:
        return config.encryption.enable_encryption
