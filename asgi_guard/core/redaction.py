"""Keep secrets out of logs: a `logging.Filter` that scrubs messages, extra fields and tracebacks.

Three nets, because no single one catches everything:
- by key: any mapping key or `key=value` / `"key": value` pair whose name says secret (authorization,
  cookie, token, password, secret, api key, ...), that a route lists in `redact_fields`, or that names
  a secret header (`DEFAULT_REDACT_HEADERS`: Authorization, Cookie, X-API-Key, X-MFA-TOTP...; more
  from `GuardSettings.redact_headers`), at any depth, including inside JSON carried as a string; and
  `Name: value` lines of those headers;
- by shape: `Bearer ...` / `Basic ...` credentials and anything that looks like a JWT;
- by value: while a request is being served, the literal values of its own secrets (its Authorization,
  Cookie and API-key headers, sensitive query parameters, and the sensitive fields of its JSON body) are
  replaced wherever they appear, e.g. inside an exception message. They are computed only when a record
  is actually logged, so requests that log nothing pay nothing.

The rules belong to an app: each `GuardRuntime` owns a `Redactor` holding its routes' `redact_fields`.
Loggers are process-wide, so one filter sits on them and, for a record logged while a request is
served, applies the rules of the app serving it (found through the request's scope); outside a
request only the built-in rules apply. Two apps in one process never share their fields.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, MutableMapping
from contextvars import ContextVar
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl

REDACTED = "[REDACTED]"
_MIN_SECRET = 4  # shorter literal values are too common to replace everywhere
_MAX_DEPTH = 16

# Key segments (after lower-casing and splitting on "_", "-", ".") that mark a value as secret.
_SECRET_SEGMENTS = frozenset(
    {
        "authorization",
        "cookie",
        "cookies",
        "token",
        "password",
        "passwd",
        "pwd",
        "secret",
        "apikey",
        "jwt",
        "credential",
        "credentials",
        "passphrase",
        "session",
        "sessionid",
    }
)
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("signing", "key")})
_SPLIT = re.compile(r"[_\-.\s]+")

_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Request headers whose values are secrets wherever they show up (GuardSettings.redact_headers adds
# to these; the security stage adds its configured TOTP header).
DEFAULT_REDACT_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-mfa-totp",
)


def _header_line(headers: Iterable[str]) -> re.Pattern[str]:
    """`Name: value` lines of the given headers (a log of raw headers, an HTTP dump)."""
    names = "|".join(sorted((re.escape(h) for h in headers), key=len, reverse=True))
    return re.compile(rf"(?i)(?<![\w-])({names})(\s*:\s*)(?![\"'\[])[^\r\n]+")


_PAIR = re.compile(
    r"""(?P<q>["']?)(?P<key>[A-Za-z_][\w.-]*)(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<val>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"'{\[,;&}\])]+)"""
)

# Set by the telemetry stage for the duration of a request: the ASGI scope, read only when logging.
current_scope: ContextVar[MutableMapping[str, Any] | None] = ContextVar("asgi_guard_scope", default=None)


def _segments_secret(key: str) -> bool:
    parts = [p for p in _SPLIT.split(key.lower()) if p]
    if any(p in _SECRET_SEGMENTS for p in parts):
        return True
    return any((a, b) in _SECRET_PAIRS for a, b in pairwise(parts))


def _normalize(key: str) -> str:
    return key.lower().replace("-", "_")


class Redactor:
    """The rules: default secret key names plus the fields routes declare (`redact_fields`)."""

    def __init__(self, fields: Iterable[str] = (), headers: Iterable[str] = DEFAULT_REDACT_HEADERS) -> None:
        self.fields: frozenset[str] = frozenset()
        self.headers: frozenset[str] = frozenset()
        self._header_keys: frozenset[str] = frozenset()
        self._header_line = _header_line(DEFAULT_REDACT_HEADERS)
        self.add_fields(fields)
        self.add_headers(headers)

    def add_headers(self, headers: Iterable[str]) -> None:
        """Add header names whose values are secret (case-insensitive); swapped in atomically."""
        extra = {h.strip().lower() for h in headers if h and h.strip()}
        if not extra <= self.headers:
            self.headers = self.headers | extra
            self._header_keys = frozenset(_normalize(h) for h in self.headers)
            self._header_line = _header_line(self.headers)

    def add_fields(self, fields: Iterable[str]) -> None:
        """Add route fields (dotted names match on their last part); swapped in atomically."""
        extra = {_normalize(f.rsplit(".", 1)[-1]) for f in fields if f}
        if not extra <= self.fields:
            self.fields = self.fields | extra

    def is_secret_key(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        normal = _normalize(key)
        return normal in self.fields or normal in self._header_keys or _segments_secret(key)

    # -- values ---------------------------------------------------------------------------------
    def value(self, value: Any, secrets: tuple[str, ...] = (), depth: int = 0) -> Any:
        """A redacted copy of `value` (mappings, sequences, strings, JSON in strings)."""
        if depth > _MAX_DEPTH:
            return REDACTED
        if isinstance(value, str):
            return self.text(value, secrets)
        if isinstance(value, dict):
            return {
                k: REDACTED if self.is_secret_key(k) else self.value(v, secrets, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, secrets, depth + 1) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"), secrets)
        return value

    def text(self, text: str, secrets: tuple[str, ...] = ()) -> str:
        """Redact a string: structurally when it is a JSON document, else by key, shape and value."""
        stripped = text.lstrip()
        if stripped[:1] in ("{", "[") and len(text) < 1_000_000:
            try:
                document = json.loads(text)
            except (ValueError, RecursionError):  # deep nesting: redacted as text below
                pass
            else:
                if isinstance(document, dict | list):
                    cleaned = self.value(document, secrets, 1)
                    return self._literals(json.dumps(cleaned, default=str), secrets)
        text = self._header_line.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = _PAIR.sub(self._pair, text)
        text = _CREDENTIAL.sub(lambda m: m.group(1) + " " + REDACTED, text)
        text = _JWT.sub(REDACTED, text)
        return self._literals(text, secrets)

    def _pair(self, match: re.Match[str]) -> str:
        if not self.is_secret_key(match.group("key")):
            return match.group(0)
        val = match.group("val")
        quote = val[0] if val[:1] in ("'", '"') else ""
        q = match.group("q")
        return f"{q}{match.group('key')}{q}{match.group('sep')}{quote}{REDACTED}{quote}"

    @staticmethod
    def _literals(text: str, secrets: tuple[str, ...]) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    # -- the current request's own secret values -------------------------------------------------
    def request_secrets(self, scope: MutableMapping[str, Any] | None) -> tuple[str, ...]:
        """Literal secret values of the request being served, longest first."""
        if scope is None:
            return ()
        found: set[str] = set()
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1")
            if not self.is_secret_key(name):
                continue
            value = raw_value.decode("latin-1").strip()
            found.add(value)
            if name.endswith("cookie"):
                for part in value.split(";"):
                    found.add(part.partition("=")[2].strip())
            else:
                found.add(value.partition(" ")[2].strip())
        query = scope.get("query_string") or b""
        if query:
            for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=False):
                if self.is_secret_key(key):
                    found.add(value)
        ctx = scope.get("asgi_guard")
        body = getattr(ctx, "_body", None) if ctx is not None else None
        if body and body.lstrip()[:1] in (b"{", b"["):
            try:
                document = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                document = None
            found.update(self._secret_leaves(document, False, 0))
        return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))

    def _secret_leaves(self, value: Any, secret: bool, depth: int) -> Iterator[str]:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                yield from self._secret_leaves(v, secret or self.is_secret_key(k), depth + 1)
        elif isinstance(value, list):
            for v in value:
                yield from self._secret_leaves(v, secret, depth + 1)
        elif secret and value is not None and not isinstance(value, bool):
            yield str(value)


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RedactionFilter(logging.Filter):
    """Scrubs every record it sees; attach it to loggers or, to cover every logger, to a handler.

    With a `redactor`, its rules apply to every record; without one, the rules of the app serving
    the current request (`GuardRuntime.redactor`), else the built-in ones.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.fixed = redactor is not None
        self.redactor = redactor or Redactor()

    def rules_for(self, scope: MutableMapping[str, Any] | None) -> Redactor:
        """The redactor for a record logged while `scope` is served."""
        if self.fixed or scope is None:
            return self.redactor
        runtime = getattr(scope.get("asgi_guard"), "runtime", None)
        found: Redactor | None = getattr(runtime, "redactor", None)
        return found or self.redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never raises (a failure would drop the record and escape
        into the code that logged): if redaction itself fails, the record keeps only a notice."""
        try:
            return self._redact(record)
        except Exception:  # noqa: BLE001 - fail closed: nothing unredacted leaves
            record.msg = "[asgi-guard: record withheld, redaction failed]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            for key in list(record.__dict__):
                if key not in _STANDARD:
                    record.__dict__[key] = REDACTED
            return True

    def _redact(self, record: logging.LogRecord) -> bool:
        scope = current_scope.get()
        redactor = self.rules_for(scope)
        secrets = redactor.request_secrets(scope)
        msg = record.msg
        if isinstance(msg, str):
            if record.args:
                try:
                    msg = msg % record.args
                except (TypeError, ValueError, KeyError):
                    msg = f"{msg} {record.args!r}"
                record.args = None
            record.msg = redactor.text(msg, secrets)
        elif hasattr(msg, "redacted"):
            record.msg = msg.redacted(redactor, secrets)
        else:
            record.msg = (
                redactor.value(msg, secrets)
                if isinstance(msg, dict | list)
                else redactor.text(str(msg), secrets)
            )
            record.args = None
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD:
                continue
            record.__dict__[key] = REDACTED if redactor.is_secret_key(key) else redactor.value(value, secrets)
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info, secrets)
        return True


_FILTER = RedactionFilter()


def redaction_filter() -> RedactionFilter:
    """The process-wide filter the asgi_guard loggers carry (attach it to your own handlers too):
    it applies the rules of the app serving the record's request."""
    return _FILTER


def attach_redaction() -> RedactionFilter:
    """Put the filter on every asgi_guard logger that exists now (the rules live in each app's
    `GuardRuntime.redactor`). A filter on a logger sees only records logged on that very logger,
    so each one needs it."""
    manager = logging.Logger.manager
    names = ["asgi_guard", *(n for n in list(manager.loggerDict) if n.startswith("asgi_guard."))]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER
