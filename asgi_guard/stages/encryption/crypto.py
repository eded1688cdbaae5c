"""Key ring and AES-256-GCM envelopes for field-level encryption.

An envelope is one ASCII string, safe in JSON and URLs:

    v1.<kid>.<nonce>.<ciphertext>

`kid` is the key id (letters, digits, `_`, `-`); `nonce` (12 random bytes) and `ciphertext` (the
AES-256-GCM output, tag included) are unpadded base64url. The associated data, built by
`associated_data(context, field)`, binds a value to the place it was written, so a ciphertext copied
to another field or route fails authentication. Keys live only inside `AESGCM` objects: no repr,
log line or error message ever shows key material.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from asgi_guard.core.errors import ConfigError

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_NONCE_CHARS = 16  # base64url length of 12 bytes, unpadded


class EnvelopeError(ValueError):
    """A value is not a valid envelope for this key ring and place; `reason` is a short slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict, canonical base64url (padding optional): urlsafe_b64decode alone silently skips bad
    characters and ignores the spare low bits of the last one, so one value could be spelt many ways."""
    stripped = text.rstrip("=")
    if not _B64URL.fullmatch(stripped):
        raise binascii.Error("not base64url")
    data = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    if b64url_encode(data) != stripped:
        raise binascii.Error("not canonical base64url")
    return data


def associated_data(context: str, field: str) -> bytes:
    """What a value is bound to: the format version, the route (or shared context) and the field."""
    return json.dumps([f"asgi-guard/{VERSION}", context, field], separators=(",", ":")).encode()


def generate_key() -> str:
    """A fresh key, base64url-encoded as `GuardSettings.encryption_keys` expects it."""
    return b64url_encode(os.urandom(KEY_BYTES))


class KeyRing:
    """Key id -> AES-256-GCM key. The primary encrypts; every id in the ring decrypts (rotation)."""

    __slots__ = ("_ciphers", "_prefix", "primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str | None = None) -> None:
        if not keys:
            raise ConfigError("the encryption key ring is empty: set GuardSettings.encryption_keys")
        ciphers: dict[str, AESGCM] = {}
        for kid, key in keys.items():
            if not _KID.fullmatch(kid):
                raise ConfigError(f"encryption key id {kid!r} must be 1-64 of [A-Za-z0-9_-]")
            if len(key) != KEY_BYTES:
                raise ConfigError(f"encryption key {kid!r} must be {KEY_BYTES} bytes, got {len(key)}")
            ciphers[kid] = AESGCM(key)
        primary = primary if primary is not None else next(iter(ciphers))
        if primary not in ciphers:
            raise ConfigError(f"encryption_primary_key {primary!r} is not in encryption_keys")
        self._ciphers = ciphers
        self.primary = primary
        self._prefix = f"{VERSION}.{primary}."

    @classmethod
    def from_settings(cls, keys: Mapping[str, SecretStr | str], primary: str | None = None) -> KeyRing:
        """Decode `GuardSettings.encryption_keys` (base64url, 32 bytes each); errors name the id only."""
        raw: dict[str, bytes] = {}
        for kid, value in keys.items():
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            try:
                raw[kid] = b64url_decode(text.strip())
            except (binascii.Error, ValueError):
                raise ConfigError(f"encryption key {kid!r} is not base64url") from None
        return cls(raw, primary)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self._ciphers)!r}, primary={self.primary!r})"

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        """Seal `plaintext` with the primary key and a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.primary].encrypt(nonce, plaintext, aad)
        return self._prefix + b64url_encode(nonce) + "." + b64url_encode(sealed)

    def decrypt(self, envelope: str, aad: bytes) -> bytes:
        """Open an envelope; any malformed, unknown-key or tampered value raises EnvelopeError."""
        parts = envelope.split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            raise EnvelopeError("malformed", f"not a {VERSION} envelope")
        _, kid, nonce_text, sealed_text = parts
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise EnvelopeError("unknown-key", f"unknown key id {kid[:64]!r}")
        if len(nonce_text) != _NONCE_CHARS:
            raise EnvelopeError("malformed", "bad nonce")
        try:
            nonce = b64url_decode(nonce_text)
            sealed = b64url_decode(sealed_text)
        except (binascii.Error, ValueError):
            raise EnvelopeError("malformed", "not base64url") from None
        if len(sealed) < TAG_BYTES:
            raise EnvelopeError("malformed", "ciphertext too short")
        try:
            return cipher.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise EnvelopeError(
                "tampered", "authentication failed (tampered, or moved from another field)"
            ) from None
