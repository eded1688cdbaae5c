"""Field-level encryption policy (stage 10)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from asgi_guard.core.model import GuardModel

_SEGMENT = re.compile(r"[^.\s]+")


class EncryptionConfig(GuardModel):
    """Which JSON fields stage 10 seals on the way in and opens on the way out.

    Turned on by `enable_encryption` (request fields are encrypted before the handler sees them)
    and/or `enable_decryption` (the same fields of the handler's JSON response are decrypted).
    """

    enable_encryption: bool = Field(
        default=False, description="encrypt `fields` of the request JSON before the handler sees it"
    )
    enable_decryption: bool = Field(
        default=False, description="decrypt `fields` of the handler's JSON response for the caller"
    )
    fields: list[str] = Field(
        default=[],
        description="JSON field names, dotted for nesting ('card.number'); arrays on the way are walked",
    )
    aad_context: str | None = Field(
        default=None,
        description="what values are bound to besides the field; default the route template. Give routes "
        "that write and read the same data (POST /secrets, GET /secrets/{id}) the same context",
    )
    allow_plaintext: bool = Field(
        default=False,
        description="on the way out, pass values that are not envelopes through unchanged (migration) "
        "instead of answering 400",
    )

    @field_validator("fields")
    @classmethod
    def _valid_paths(cls, fields: list[str]) -> list[str]:
        for path in fields:
            if not all(_SEGMENT.fullmatch(part) for part in path.split(".")):
                raise ValueError(f"field path {path!r}: use dot-separated, non-empty names")
        unique = list(dict.fromkeys(fields))
        for path in unique:
            for other in unique:
                if other != path and other.startswith(path + "."):
                    raise ValueError(f"field paths {path!r} and {other!r} overlap")
        return unique

    @model_validator(mode="after")
    def _fields_when_enabled(self) -> EncryptionConfig:
        if (self.enable_encryption or self.enable_decryption) and not self.fields:
            raise ValueError("encryption is enabled but `fields` names no JSON field to protect")
        return self
