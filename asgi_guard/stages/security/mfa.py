"""MFA: an `amr` claim naming a second factor (RFC 8176), or a step-up TOTP code (RFC 6238).

The TOTP secret of a subject comes from a pluggable resolver, `resolver(subject) -> str | bytes |
None` (sync or async; a str is base32 as authenticator apps show it). It is found, in order, from the
route's `mfa_totp_resolver` ("module:function") or the runtime service `totp_secret_resolver`
(`set_totp_secret_resolver(runtime, fn)`). A code is good once: the last accepted time step per subject
is remembered (in Valkey when the app uses it, via one atomic script), so a replay is refused even by
another worker process; the store is `store.TotpStore`, its meaning `reference.ReferenceTotp`.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from asgi_guard.core.errors import ConfigError
from asgi_guard.stages.security.memory import MemoryTotpStore
from asgi_guard.stages.security.store import TotpStore
from asgi_guard.stages.security.valkey import ValkeyTotpStore
from asgi_guard.state import Backend, choose

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime

SecretResolver = Callable[[str], "str | bytes | Awaitable[str | bytes | None] | None"]
RESOLVER_SERVICE = "totp_secret_resolver"


def set_totp_secret_resolver(runtime: GuardRuntime, resolver: SecretResolver) -> None:
    """Make `resolver` the app-wide TOTP secret source (call before the app serves requests)."""
    runtime.service(RESOLVER_SERVICE, lambda: resolver)


def load_resolver(path: str | None, runtime: GuardRuntime) -> SecretResolver | None:
    """The route's "module:function" resolver, else the runtime's, else None (TOTP step-up off)."""
    if path:
        module_name, _, attr = path.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"security.mfa_totp_resolver {path!r} cannot be imported: {exc}") from exc
        if not callable(found):
            raise ConfigError(f"security.mfa_totp_resolver {path!r} is not callable")
        return found  # type: ignore[no-any-return]
    resolver: SecretResolver | None = runtime.service(RESOLVER_SERVICE, lambda: None)
    return resolver


def decode_secret(secret: str | bytes) -> bytes:
    """Raw key bytes: bytes as given, a str as base32 (spaces, case and missing padding tolerated)."""
    if isinstance(secret, bytes):
        return secret
    text = secret.replace(" ", "").upper()
    text += "=" * (-len(text) % 8)
    try:
        return base64.b32decode(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("TOTP secret is not base32") from exc


def totp_store(backend: Backend, step_ttl: float, max_failures: int, lockout: float) -> TotpStore:
    """The replay / lock-out store for `backend` (chosen once, at build time)."""
    return choose(
        backend,
        memory=lambda b: MemoryTotpStore(b, step_ttl, max_failures, lockout),
        valkey=lambda b: ValkeyTotpStore(b, step_ttl, max_failures, lockout),
        concern="TOTP replay protection",
    )


class TotpChecker:
    """Finds the time step a code belongs to, within `drift` steps of now, with cryptography's TOTP."""

    def __init__(self, digits: int, step: int, drift: int, clock: Callable[[], float] = time.time) -> None:
        self.digits = digits
        self.step = step
        self.drift = drift
        self.clock = clock
        offsets = [0]
        for n in range(1, drift + 1):
            offsets += [-n, n]
        self._offsets = tuple(offsets)

    def well_formed(self, code: str) -> bool:
        return len(code) == self.digits and code.isascii() and code.isdigit()

    def counter_of(self, key: bytes, code: str) -> int | None:
        """The time step `code` is valid for, or None (wrong, or outside the window)."""
        totp = TOTP(key, self.digits, SHA1(), self.step, enforce_key_length=False)
        now = self.clock()
        wanted = code.encode()
        for offset in self._offsets:
            at = now + offset * self.step
            try:
                totp.verify(wanted, int(at))
            except InvalidToken:
                continue
            return int(at // self.step)
        return None


async def resolve_secret(resolver: SecretResolver, subject: str) -> bytes | None:
    """Call the resolver (sync or async) and decode what it returns."""
    found = resolver(subject)
    if inspect.isawaitable(found):
        found = await found
    if found is None:
        return None
    return decode_secret(found)
