"""Field-level encryption policy (stage 10)."""

from __future__ import annotations

from ._base import GuardModel


class EncryptionConfig(GuardModel):
    enable_encryption: bool = False
    enable_decryption: bool = False
    fields: list[str] = []
