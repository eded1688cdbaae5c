"""Stage 10: field-level encryption of request and response JSON.

Innermost, so every outer stage has already accepted the request. On the way in, each configured
field of the JSON body is replaced by an AES-256-GCM envelope (the value serialised as JSON, so any
JSON type round-trips) and the handler sees, and stores, only ciphertext. On the way out, the same
fields of a buffered JSON response are opened again for the caller. Streaming (no Content-Length),
compressed and non-JSON responses pass through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.problems import Problem, answer_problem
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.encryption.crypto import VERSION, EnvelopeError, KeyRing, associated_data
from asgi_guard.stages.encryption.declared import Validators, declared_validators

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.encryption.config import EncryptionConfig

_KEYRING_SERVICE = "encryption.keyring"
_ENVELOPE_PREFIX = VERSION + "."
_SKIP: Any = object()  # a leaf function's "leave this value as it is"
_PASS, _BUFFER, _DONE = 1, 2, 3
Leaf = Callable[[Any], Any]


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as Starlette's JSONResponse writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _rewrite(node: Any, parts: tuple[str, ...], depth: int, leaf: Leaf) -> tuple[Any, int]:
    """`node` with `leaf` applied at the dotted path (arrays on the way are walked), copied on write
    so documents an outer stage parsed are never changed under it; and how many values changed."""
    if isinstance(node, list):
        out: list[Any] | None = None
        total = 0
        for index, item in enumerate(node):
            new, count = _rewrite(item, parts, depth, leaf)
            if count:
                if out is None:
                    out = list(node)
                out[index] = new
                total += count
        return (node if out is None else out), total
    if not isinstance(node, dict):
        return node, 0
    key = parts[depth]
    if key not in node:
        return node, 0
    if depth == len(parts) - 1:
        value = leaf(node[key])
        if value is _SKIP:
            return node, 0
        count = 1
    else:
        value, count = _rewrite(node[key], parts, depth + 1, leaf)
        if not count:
            return node, 0
    copied = dict(node)
    copied[key] = value
    return copied, count


def _invalid(path: str, reason: str, detail: str) -> Problem:
    return Problem(
        400,
        "encrypted-field-invalid",
        "Bad Request",
        f"field {path!r}: {detail}",
        extra={"field": path, "reason": reason},
    )


class _FieldError(EnvelopeError):
    """An EnvelopeError that knows which configured field it came from."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.field = field


class EncryptionMiddleware(Stage["EncryptionConfig"]):
    """Seals the route's configured request fields and opens them in its JSON responses."""

    name = "encryption"
    section = "encryption"

    def __init__(self, app: ASGIApp, route: RouteInfo[EncryptionConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        policy = self.config
        self.keyring = self._keyring(route, runtime)
        context = policy.aad_context or route.template
        self.encrypts = policy.enable_encryption
        self.decrypts = policy.enable_decryption
        self.allow_plaintext = policy.allow_plaintext
        fields = [(path, tuple(path.split(".")), associated_data(context, path)) for path in policy.fields]
        self.sealers = tuple((parts, self._sealer(path, aad)) for path, parts, aad in fields)
        self.paths = tuple(parts for _, parts, _ in fields)
        self._declared: Validators | None = None  # found on the first request (the app is in the scope)
        self.openers = tuple((parts, self._opener(path, aad)) for path, parts, aad in fields)

    @staticmethod
    def _keyring(route: RouteInfo[Any], runtime: GuardRuntime) -> KeyRing:
        """The app's one key ring, validated at build time; errors name the route, never a key."""
        settings = runtime.settings
        if not settings.encryption_keys:
            raise ConfigError(
                f"route {route.template!r}: encryption is enabled but GuardSettings.encryption_keys is empty"
            )
        try:
            return runtime.service(
                _KEYRING_SERVICE,
                lambda: KeyRing.from_settings(settings.encryption_keys, settings.encryption_primary_key),
            )
        except ConfigError as exc:
            raise ConfigError(f"route {route.template!r}: {exc}") from None

    @classmethod
    def enabled_for(cls, config: EncryptionConfig) -> bool:
        return config.enable_encryption or config.enable_decryption

    @classmethod
    def needs_body(cls, config: EncryptionConfig) -> bool:
        return config.enable_encryption

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        decisions: dict[str, Any] = {"key_id": self.keyring.primary}
        ctx.decide(self.name, "allowed", **decisions)
        if self.encrypts:
            if self._declared is None:
                self._declared = declared_validators(
                    scope.get("app"), self.route.template, self.route.methods, self.paths
                )
            decisions["encrypted"] = await self._encrypt_request(ctx, scope)
            ctx.decide(self.name, "allowed", **decisions)
        if self.decrypts and scope["method"] != "HEAD":
            send = self._decrypting_send(ctx, send, decisions)
        await self.app(scope, receive, send)

    # -- request --------------------------------------------------------------------------------
    async def _encrypt_request(self, ctx: GuardContext, scope: Scope) -> int:
        """Replace each configured field of the body by its envelope; returns how many were sealed."""
        try:
            document = await ctx.json()
        except Problem as problem:
            ctx.decide(self.name, "rejected", problem.slug.replace("-", "_"))
            raise
        except RecursionError:
            ctx.decide(self.name, "rejected", "too_deep")
            raise Problem(400, "malformed-json", "Bad Request", "request body nests too deeply") from None
        if document is None:
            return 0
        if self._declared:
            self._check_declared(ctx, document)
        total = 0
        try:
            for parts, seal in self.sealers:
                document, count = _rewrite(document, parts, 0, seal)
                total += count
        except _FieldError as exc:
            ctx.decide(self.name, "rejected", exc.reason)
            raise _invalid(exc.field, exc.reason, exc.detail) from None
        except RecursionError:
            ctx.decide(self.name, "rejected", "too_deep")
            raise Problem(400, "malformed-json", "Bad Request", "request body nests too deeply") from None
        if total:
            ctx.replace_body(_dumps(document), scope)
        return total

    def _check_declared(self, ctx: GuardContext, document: Any) -> None:
        """422, as the app would answer, when a field to seal is not of the type the route declares."""
        errors: list[dict[str, Any]] = []
        for parts, adapter in (self._declared or {}).items():

            def check(value: Any, parts: tuple[str, ...] = parts, adapter: Any = adapter) -> Any:
                try:
                    adapter.validate_python(value)
                except ValidationError as exc:
                    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
                    errors.append({"loc": ["body", *parts], "msg": first["msg"], "type": first["type"]})
                return _SKIP

            _rewrite(document, parts, 0, check)
        if errors:
            ctx.decide(self.name, "rejected", "validation_failed", fields=len(errors))
            raise Problem(
                422,
                "request-validation-failed",
                "Unprocessable Content",
                f"{len(errors)} field(s) do not match the route's declared types",
                extra={"errors": errors},
            )

    # -- response -------------------------------------------------------------------------------
    def _decrypting_send(self, ctx: GuardContext, send: Send, decisions: dict[str, Any]) -> Send:
        """A send that holds back a JSON response with a Content-Length until its last byte, then
        sends it with the configured fields opened (or a 400 problem if one will not open)."""
        mode = 0
        start: Message = {}
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal mode, start
            if mode == _PASS:
                await send(message)
                return
            kind = message["type"]
            if kind == "http.response.start":
                if _bufferable(message.get("headers", ())):
                    start, mode = message, _BUFFER
                    return
                mode = _PASS
                await send(message)
                return
            if mode == _BUFFER and kind == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                mode = _DONE
                await self._send_decrypted(ctx, start, b"".join(chunks), send, decisions)
                return
            if mode != _DONE:
                await send(message)

        return wrapped

    async def _send_decrypted(
        self, ctx: GuardContext, start: Message, body: bytes, send: Send, decisions: dict[str, Any]
    ) -> None:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            document = _SKIP  # not our JSON to fix: the caller gets the handler's bytes
        total = 0
        if document is not _SKIP:
            try:
                for parts, open_value in self.openers:
                    document, count = _rewrite(document, parts, 0, open_value)
                    total += count
            except _FieldError as exc:
                decisions["decrypted"] = 0
                decisions["failure"] = exc.reason
                ctx.decide(self.name, "rejected", exc.reason, **decisions)
                await answer_problem(ctx, send, _invalid(exc.field, exc.reason, exc.detail))
                return
            except RecursionError:
                total = 0
        decisions["decrypted"] = total
        ctx.decide(self.name, "allowed", **decisions)
        if total:
            body = _dumps(document)
            length = str(len(body)).encode()
            headers = [
                (k, length if k.lower() == b"content-length" else v) for k, v in start.get("headers", ())
            ]
            start = {**start, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _sealer(self, path: str, aad: bytes) -> Leaf:
        keyring = self.keyring

        def seal(value: Any) -> str:
            try:
                plaintext = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            except ValueError:
                raise _FieldError(path, "not-finite", "NaN and Infinity cannot be encrypted") from None
            return keyring.encrypt(plaintext.encode(), aad)

        return seal

    def _opener(self, path: str, aad: bytes) -> Leaf:
        keyring, allow_plaintext = self.keyring, self.allow_plaintext

        def open_value(value: Any) -> Any:
            if value is None:
                return _SKIP
            if not isinstance(value, str) or not value.startswith(_ENVELOPE_PREFIX):
                if allow_plaintext:
                    return _SKIP
                raise _FieldError(path, "not-ciphertext", "expected an encrypted value")
            try:
                return json.loads(keyring.decrypt(value, aad))
            except EnvelopeError as exc:
                raise _FieldError(path, exc.reason, exc.detail) from None
            except ValueError:
                raise _FieldError(path, "malformed", "decrypted value is not JSON") from None

        return open_value


def _bufferable(headers: Any) -> bool:
    """A JSON body of known length that is not compressed (and not already a problem document)."""
    is_json = has_length = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            is_json = media == b"application/json" or (
                media.endswith(b"+json") and media != b"application/problem+json"
            )
        elif lowered == b"content-length":
            has_length = True
        elif lowered == b"content-encoding" and value.strip().lower() != b"identity":
            return False
    return is_json and has_length
