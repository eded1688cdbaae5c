"""What one request asks of the cache: its primary key, whether it may use shared entries, its Vary
fingerprint and Cache-Control (built once per request, by the stage or the round-trip rider).

The primary key (RFC 9111 §4: method and target URI, plus what the route adds) hashes, each part
length-prefixed so no crafted value makes two requests collide:
scheme, host (the trusted Host), method (HEAD looks up GET's entry), route label, path, resource id
(path parameter, or the JSON body field with `resource_id_from_body`), query string (optionally
sorted, listed parameters dropped), the route's `vary_headers` values, and the principal the guard
verified when the route is not `shared` (else `*`). Variants (the response's Vary) are a secondary
key below it, chosen by the store (see `control.secondary`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from starlette.types import Scope

from asgi_guard.core.proxies import parse_proxies, peer_trusted
from asgi_guard.stages.cache import control
from asgi_guard.stages.cache.control import RequestDirectives

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.core.stage import RouteInfo
    from asgi_guard.stages.cache.config import CacheConfig

LOOKUP = "lookup"  # may be answered from the cache
REFRESH = "refresh"  # the request's no-cache / max-age=0: run the handler, replace the entry
BYPASS = "bypass"  # never answered from a shared entry, never joins a flight (credentials, host)
PASS = "pass"  # a method the route does not cache (unsafe ones invalidate)

_HOST = b"host"
_X_FORWARDED_HOST = b"x-forwarded-host"
_DEFAULT_PORT = {"http": b":80", "https": b":443"}
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(slots=True)
class Plan:
    """One request's dealings with the cache."""

    mode: str  # LOOKUP | REFRESH | BYPASS | PASS
    key: str  # primary key digest ("" for PASS)
    directives: RequestDirectives
    prints: Mapping[str, str]  # Vary fingerprint of the request headers
    per_principal: bool  # the key carries the verified principal
    credentialed: bool  # credentials the guard did not verify (shared entries need `public`)
    head: bool  # a HEAD request (answered from GET's entry without a body)
    reason: str = ""  # why BYPASS


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Starlette TrustedHostMiddleware semantics: exact, `*.domain` (subdomains only), or `*`."""
    for pattern in patterns:
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def _strip_port(value: str) -> str:
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class CacheKeyBuilder:
    """Built once per route; `plan()` classifies a request and hashes its primary key."""

    __slots__ = (
        "_allowed",
        "_any_host",
        "_cookies",
        "_drop",
        "_drop_prefix",
        "_forwarded",
        "_from_body",
        "_label",
        "_methods",
        "_normalise",
        "_shared",
        "_trusted",
        "_vary",
    )

    def __init__(self, route: RouteInfo[CacheConfig], runtime: GuardRuntime | None = None) -> None:
        cache = route.config
        self._label = route.label.encode()
        self._vary = tuple(name.encode("latin-1") for name in cache.vary_headers)
        self._shared = cache.shared
        self._from_body = route.resource_id_from_body
        self._methods = frozenset(cache.methods)
        self._allowed = tuple(cache.allowed_hosts)
        self._any_host = "*" in self._allowed
        self._cookies = None if cache.credential_cookies is None else frozenset(cache.credential_cookies)
        self._normalise = cache.normalize_query or bool(cache.ignore_query_params)
        self._drop = frozenset(p for p in cache.ignore_query_params if not p.endswith("*"))
        self._drop_prefix = tuple(p[:-1] for p in cache.ignore_query_params if p.endswith("*"))
        self._forwarded = cache.trust_forwarded_host
        proxies = runtime.settings.trusted_proxies if runtime is not None else []
        self._trusted = parse_proxies(proxies)

    # -- parts ----------------------------------------------------------------------------------
    def host(self, scope: Scope) -> bytes:
        """The request's host as sent (with its port: another port is another origin), lower-case:
        X-Forwarded-Host (first) only from a trusted
        proxy when the route says so, else Host, else the server the scope names."""
        headers = scope["headers"]
        if self._forwarded and peer_trusted(scope, self._trusted):
            forwarded = control.header(headers, _X_FORWARDED_HOST)
            if forwarded:
                return forwarded.split(b",")[0].strip().lower()
        for name, value in headers:
            if name == _HOST:
                return bytes(value).strip().lower()
        server = scope.get("server")
        return str(server[0]).lower().encode("latin-1", "replace") if server else b""

    def query(self, raw: bytes) -> bytes:
        if not self._normalise or not raw:
            return raw
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        kept = [
            (k, v)
            for k, v in pairs
            if k not in self._drop and not (self._drop_prefix and k.startswith(self._drop_prefix))
        ]
        return urlencode(sorted(kept)).encode("latin-1")

    def credentials(self, headers: control.RawHeaders) -> bool:
        """Authorization, or a credential cookie (any cookie when `credential_cookies` is None)."""
        for name, value in headers:
            if name == control.AUTHORIZATION:
                return True
            if name == control.COOKIE:
                if self._cookies is None:
                    if value.strip():
                        return True
                    continue
                for part in value.decode("latin-1").split(";"):
                    if part.split("=", 1)[0].strip() in self._cookies:
                        return True
        return False

    # -- the plan -------------------------------------------------------------------------------
    async def plan(self, ctx: GuardContext, scope: Scope) -> Plan:
        headers = scope["headers"]
        method = ctx.method
        head = method == "HEAD"
        directives = control.request_directives(headers)
        if method not in self._methods:
            return Plan(PASS, "", directives, _NO_PRINTS, False, False, head)
        host = self.host(scope)
        principal = ctx.principal
        per_principal = principal is not None and not self._shared
        # a verified principal is never "credentials the guard did not verify"; on a `shared`
        # route it shares the anonymous entries (the operator's opt-in)
        credentialed = principal is None and self.credentials(headers)
        resource = await ctx.resolve_resource_id() if self._from_body else ctx.resource_id
        scheme = scope.get("scheme", "http")
        if host.endswith(_DEFAULT_PORT.get(scheme, b"\x00")):  # RFC 9110 §4.2.3: same origin
            host = host.rsplit(b":", 1)[0]
        parts = [
            scheme.encode("latin-1"),
            host,
            b"GET" if head else method.encode(),
            self._label,
            ctx.path.encode("utf-8", "surrogateescape"),
            b"" if resource is None else b"r" + resource.encode("utf-8", "surrogateescape"),
            self.query(scope.get("query_string", b"")),
        ]
        for name in self._vary:
            parts.append(name)
            parts.extend(value for key, value in headers if key == name)
            parts.append(b"\x00")  # closes the header's values (names never hold a NUL)
        if per_principal:
            parts.append(b"u" + principal.subject.encode("utf-8", "surrogateescape"))  # type: ignore[union-attr]
        else:
            parts.append(b"*")
        key = hashlib.blake2b(
            b"".join([len(p).to_bytes(4, "big") + p for p in parts]), digest_size=16
        ).hexdigest()
        prints = control.fingerprint(headers)
        if not self._any_host and not host_allowed(_strip_port(host.decode("latin-1")), self._allowed):
            return Plan(BYPASS, key, directives, prints, per_principal, credentialed, head, "host")
        mode = REFRESH if directives.refresh else LOOKUP
        return Plan(mode, key, directives, prints, per_principal, credentialed, head)


_NO_PRINTS: Mapping[str, str] = {}


def unsafe(method: str) -> bool:
    return method not in _SAFE
