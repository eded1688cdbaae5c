"""The operator console: a small pure-ASGI app (no Starlette routing, no templates, no CDN).

Routes, relative to where it is mounted (`root_path`):

| path | what |
|---|---|
| `/` (GET) | the page: server-rendered HTML plus a little inline JS that polls `api/summary` every second |
| `/api/summary` (GET) | JSON: decision counts, top limited keys, circuits, outbox, cache ratio |
| `/api/policies` (GET) | JSON: each route's template, methods, stages and limit numbers |
| `/api/credits?user=U&type=T` (GET) | JSON: one balance, read-only (`{"user", "type", "balance"}`) |
| `/api/credits?ip=A&type=T` (GET) | the same for an anonymous client's balance, by its address |
| `/login` (GET form, POST `token=`) | sets the session cookie (a keyed digest of the token, not the token) |

Access (checked on every request, page and API alike): the client IP must be in `allow` when it is
set (else 403), and a `token` must be presented when it is set, as `Authorization: Bearer` or the
login form's cookie (else 401, with `WWW-Authenticate: Bearer`, RFC 6750 section 3). Wrong
credentials are throttled per client (asgi_guard.console.throttle: 5 in 5 minutes by default, then
429 with Retry-After for any credential, the right one included, until the window ends). Refusals are
RFC 9457 problem+json; a browser asking for the page without a credential is sent to the login form.
At least one of the two must be configured: a console open to anyone is refused at build time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.console.page import render_login, render_page
from asgi_guard.console.summary import policies, summary
from asgi_guard.console.throttle import DEFAULT_ATTEMPTS, DEFAULT_WINDOW, LoginThrottle
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.problems import Problem, method_not_allowed, send_problem
from asgi_guard.core.proxies import ClientResolver, in_networks, parse_networks
from asgi_guard.stages.credits import Anonymous, CreditError, credit_store

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.registry import CompiledRoute

COOKIE = "asgi_guard_console"
MIN_TOKEN = 16
MAX_FORM = 4096  # bytes of login form body read at most
MAX_FIELD = 256  # characters of a credits lookup's user or type
_SESSION_SALT = b"asgi-guard console session v1"
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # inline script and style only, same-origin fetches, nothing from anywhere else
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


def _session_value(token: str) -> str:
    """What the cookie holds: a keyed digest, so the raw token never sits in the browser's jar."""
    return hmac.new(token.encode(), _SESSION_SALT, hashlib.sha256).hexdigest()


def route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette's Mount keeps `path` whole and extends root_path;
    older servers/routers strip it: both work)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _send(
    send: Send, status: int, body: bytes, content_type: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers += _SECURITY_HEADERS
    headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, doc: Any, status: int = 200) -> None:
    await _send(send, status, json.dumps(doc, separators=(",", ":")).encode(), b"application/json")


class ConsoleApp:
    """The console as an ASGI app; see the module docstring. Build it with `console_app()`."""

    def __init__(
        self,
        runtime: GuardRuntime,
        routes: Iterable[CompiledRoute] | Callable[[], Iterable[CompiledRoute]],
        token: str | None,
        allow: Iterable[str],
        throttle: LoginThrottle | None = None,
    ) -> None:
        if token is not None and len(token) < MIN_TOKEN:
            raise ConfigError(f"the console token must have at least {MIN_TOKEN} characters")
        self.allow = parse_networks(allow)
        if token is None and not self.allow:
            raise ConfigError("the console needs a token or an IP allowlist (console_token / console_allow)")
        self.runtime = runtime
        self.token = token
        self._bearer = token.encode() if token is not None else None
        self._session = _session_value(token) if token is not None else None
        self._resolve = ClientResolver(
            runtime.settings.trusted_proxies, runtime.settings.forwarded_header
        ).resolve
        # the routes now (the guard's bound policies: declared ones, a reload, routes added later),
        # or a fixed list given by hand
        self._routes = routes if callable(routes) else (lambda fixed=list(routes): fixed)
        self._policies: tuple[tuple[int, ...], list[dict[str, Any]]] | None = None
        self._credits: Any = None
        self.throttle = throttle or LoginThrottle()
        runtime.enable_tally()

    # -- access ---------------------------------------------------------------------------------
    def _refusal(self, scope: Scope, client: str) -> Problem | None:
        """None when the request may see the console, else the 403/429/401 to answer. A client
        past its failed-credential budget gets 429 before its credential is even compared."""
        return self._ip_refusal(client) or self._token_refusal(scope, client)

    def _client(self, scope: Scope) -> str:
        """The client's address: `trusted_proxies` applied, as the guard resolves it."""
        return self._resolve(scope)

    def _ip_refusal(self, client: str) -> Problem | None:
        if self.allow and not in_networks(client, self.allow):
            return Problem(403, "console-forbidden", "Forbidden", "this address may not open the console")
        return None

    def _throttled(self, client: str) -> Problem | None:
        wait = self.throttle.retry_after(client)
        if not wait:
            return None
        return Problem(
            429,
            "console-throttled",
            "Too Many Requests",
            f"too many failed console logins from this address; retry in {wait} s",
            headers=[(b"retry-after", str(wait).encode())],
        )

    def _token_refusal(self, scope: Scope, client: str) -> Problem | None:
        if self._bearer is None:
            return None
        throttled = self._throttled(client)
        if throttled is not None:
            return throttled
        supplied = _header(scope, b"authorization")
        if supplied is not None:
            scheme, _, value = supplied.partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._bearer):
                self.throttle.succeeded(client)
                return None
        cookie = _cookie(scope, COOKIE)
        if (
            cookie is not None
            and self._session is not None
            and hmac.compare_digest(cookie.encode(), self._session.encode())
        ):
            self.throttle.succeeded(client)
            return None
        challenge = b'Bearer realm="asgi-guard console"'
        if supplied is not None or cookie is not None:  # a wrong credential: it counts
            self.throttle.failed(client)
            challenge += b', error="invalid_token"'
        return Problem(
            401,
            "console-unauthorized",
            "Unauthorized",
            "a valid console token is required",
            headers=[(b"www-authenticate", challenge)],
        )

    # -- ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path = route_path(scope)
        method = scope["method"]
        if path == "":  # relative links need the trailing slash
            location = (scope.get("root_path", "") or scope["path"]) + "/"
            await _send(send, 308, b"", b"text/plain", [(b"location", location.encode())])
            return
        if path == "/login":
            await self._login(scope, receive, send)
            return
        refusal = self._refusal(scope, self._client(scope))
        if refusal is not None:
            accept = _header(scope, b"accept") or b""
            if path == "/" and method == "GET" and refusal.status == 401 and b"text/html" in accept:
                await _send(send, 303, b"", b"text/plain", [(b"location", b"login")])
                return
            await send_problem(send, refusal)
            return
        if method not in ("GET", "HEAD"):
            await send_problem(
                send,
                method_not_allowed(method, "GET, HEAD"),
            )
            return
        if path == "/":
            await _send(send, 200, render_page(self._policies_now()).encode(), b"text/html; charset=utf-8")
        elif path == "/api/summary":
            await _json(send, await summary(self.runtime, self._policies_now()))
        elif path == "/api/policies":
            await _json(send, self._policies_now())
        elif path == "/api/credits":
            await self._credits_lookup(scope, send)
        else:
            await send_problem(send, Problem(404, "not-found", "Not Found", f"no console page at {path}"))

    def _policies_now(self) -> list[dict[str, Any]]:
        """The policy table, made again only when the routes changed (the guard keeps its bound
        routes alive, so their ids stay theirs while they are listed)."""
        routes = list(self._routes())
        key = tuple(map(id, routes))
        if self._policies is None or self._policies[0] != key:
            self._policies = (key, policies(routes, self.runtime))
        return self._policies[1]

    async def _credits_lookup(self, scope: Scope, send: Send) -> None:
        try:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), max_num_fields=8)
        except ValueError:  # more fields than that: the client's garbage, not our 500
            await send_problem(send, _too_many_fields(8))
            return
        user = (query.get("user") or [""])[0]
        address = (query.get("ip") or [""])[0]  # an anonymous client's balance, by its address
        kind = (query.get("type") or ["default"])[0] or "default"
        if (not user and not address) or len(user + address) > MAX_FIELD or len(kind) > MAX_FIELD:
            await send_problem(
                send,
                Problem(
                    400,
                    "bad-credits-lookup",
                    "Bad Request",
                    f"`user` (a JWT subject) or `ip` (an anonymous client) is required; each, and "
                    f"`type`, has at most {MAX_FIELD} characters",
                ),
            )
            return
        if self._credits is None:
            self._credits = credit_store(self.runtime.backend)
        try:
            owner = user if user else Anonymous(address)
            balance = await self._credits.balance(owner, kind)
        except CreditError as exc:
            await send_problem(send, Problem(400, "bad-credits-lookup", "Bad Request", str(exc)))
            return
        except Exception:  # noqa: BLE001 - any store failure: a 503, never a 500 page
            await send_problem(
                send,
                Problem(
                    503,
                    "backend-unavailable",
                    "Service Unavailable",
                    "the credits backend is unavailable",
                    headers=[(b"retry-after", b"1")],
                ),
            )
            return
        found = {"user": user} if user else {"ip": address}
        await _json(send, {**found, "type": kind, "balance": balance})

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET: the form. POST `token=...`: the cookie on a match (303 to the page), else 401."""
        page = b"text/html; charset=utf-8"
        client = self._client(scope)
        refusal = self._ip_refusal(client)  # the allowlist guards the form too
        if refusal is not None:
            await send_problem(send, refusal)
            return
        method = scope["method"]
        if self.token is None:
            await _send(send, 303, b"", b"text/plain", [(b"location", b"./")])
            return
        if method in ("GET", "HEAD"):
            await _send(send, 200, render_login().encode(), page)
            return
        if method != "POST":
            await send_problem(
                send,
                method_not_allowed(method, "GET, HEAD, POST"),
            )
            return
        body = await _read_body(receive, MAX_FORM)
        if body is None:
            await send_problem(
                send,
                Problem(
                    413,
                    "payload-too-large",
                    "Payload Too Large",
                    f"the login form has at most {MAX_FORM} bytes",
                ),
            )
            return
        try:
            fields = parse_qs(body.decode("latin-1"), max_num_fields=4)
        except ValueError:
            await send_problem(send, _too_many_fields(4))
            return
        throttled = self._throttled(client)  # before the comparison: guessing goes no faster
        if throttled is not None:
            await send_problem(send, throttled)
            return
        supplied = (fields.get("token") or [""])[0]
        if not hmac.compare_digest(supplied.encode("utf-8", "replace"), self.token.encode()):
            self.throttle.failed(client)
            await _send(
                send,
                401,
                render_login("That token is not the console's.").encode(),
                page,
                [(b"www-authenticate", b'Bearer realm="asgi-guard console", error="invalid_token"')],
            )
            return
        self.throttle.succeeded(client)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        root = scope.get("root_path", "") or "/"
        path = root if not any(c in root for c in ';,"\r\n') else "/"  # a cookie attribute value
        cookie = f"{COOKIE}={self._session}; Path={path}; HttpOnly; SameSite=Strict{secure}"
        await _send(send, 303, b"", b"text/plain", [(b"location", b"./"), (b"set-cookie", cookie.encode())])


def _too_many_fields(limit: int) -> Problem:
    return Problem(400, "bad-request", "Bad Request", f"at most {limit} form or query fields")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def console_app(
    runtime: GuardRuntime,
    routes: Iterable[CompiledRoute] | Callable[[], Iterable[CompiledRoute]] = (),
    *,
    token: str | None = None,
    allow: Iterable[str] = (),
    login_attempts: int = DEFAULT_ATTEMPTS,
    login_window: float = DEFAULT_WINDOW,
) -> ASGIApp:
    """The operator console for the app that `runtime` guards, as an ASGI app to mount.

    - `routes`: the registry (or its routes, or a function giving the routes now) whose policies
      the page lists;
    - `token`: 16+ characters, wanted as `Authorization: Bearer` or through the login form;
    - `allow`: CIDRs of the clients that may open it (with `token` too, both must pass);
    - `login_attempts` failed credentials per client (IPv4 address, IPv6 /64) in `login_window`
      seconds, then 429 with Retry-After until the window ends (asgi_guard.console.throttle).
    At least one of `token` and `allow` is required (ConfigError otherwise). It turns on the
    runtime's decision counts, fed by the telemetry stage: build it before `install()` so that the
    telemetry stage is built even on an app with metrics, tracing and access logs all off.
    """
    return ConsoleApp(runtime, routes, token, allow, LoginThrottle(login_attempts, login_window))
