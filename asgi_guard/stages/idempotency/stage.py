"""Stage 4: Idempotency-Key replay (draft-ietf-httpapi-idempotency-key-header).

The first request with a key claims it, runs, and its response (status, headers, body) is stored
for `ttl`; the same key and the same request again gets that response back with
`Idempotent-Replayed: true`, without running anything inside this stage (no second charge, no second
event). The same key while the first is still running is a 409; with another method, path, query or
body a 422. A 5xx or an exception releases the key so the client may retry. Keys are scoped per
route and user (JWT subject, else client IP).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.http import CachedResponse
from asgi_guard.core.problems import Problem, backend_unavailable
from asgi_guard.core.proxies import UNKNOWN
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.idempotency import Claim, build_store

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.idempotency.config import IdempotencyConfig

log = logging.getLogger("asgi_guard.idempotency")

_HEADER = b"idempotency-key"
_REPLAYED = (b"idempotent-replayed", b"true")


class IdempotencyMiddleware(Stage["IdempotencyConfig"]):
    name = "idempotency"
    section = "idempotency"

    def __init__(self, app: ASGIApp, route: RouteInfo[IdempotencyConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        config = self.config
        self._store = build_store(self.backend)
        self._label = route.label.encode()
        self._ttl = float(config.ttl)
        timeout = route.handler_timeout
        # A claim must outlive the handler, else a slow first attempt could run twice.
        self._lock_ttl = float(max(config.lock_ttl, (timeout or 0) + 5))
        self._max_key = config.max_key_length
        self._required = config.required
        self._fail_open = config.fail_open
        self._max_response = config.max_response_size
        self._faults = runtime.metrics.backend_faults.labels(route.label, self.name)

    @classmethod
    def enabled_for(cls, config: IdempotencyConfig) -> bool:
        return config.enabled

    @classmethod
    def needs_body(cls, config: IdempotencyConfig) -> bool:
        return config.enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        raw: bytes | None = None
        count = 0
        for name, value in scope["headers"]:
            if name == _HEADER:
                raw, count = value, count + 1
        if raw is None:
            if self._required:
                self._reject(ctx, "missing")
            ctx.decide(self.name, "allowed", "no_key", result="absent")
            await self.app(scope, receive, send)
            return
        key = self._parse(ctx, raw, count)
        if ctx.principal is None and ctx.client_ip == UNKNOWN:
            # every client on an untrusted unix socket is "unknown": a stored answer would be
            # replayed to whichever of them sends the same key next
            if not self._fail_open:
                ctx.decide(self.name, "rejected", "client_unknown", result="error")
                raise Problem(
                    503,
                    "idempotency-client-unknown",
                    "Service Unavailable",
                    "this server cannot tell anonymous clients apart, so it cannot keep an "
                    "Idempotency-Key's answer for one client only",
                )
            ctx.decide(self.name, "allowed", "client_unknown", result="error")
            await self.app(scope, receive, send)
            return
        body = await ctx.body()
        fingerprint = _digest(
            ctx.method.encode(),
            ctx.path.encode("utf-8", "surrogateescape"),
            scope.get("query_string", b""),
            body,
            size=20,
        )
        owner = ctx.principal_key  # subjects and anonymous addresses in separate namespaces
        record = _digest(self._label, owner.encode(), key, size=20)
        token = os.urandom(12).hex()
        try:
            claim = await self._store.claim(record, fingerprint, token, self._lock_ttl, owner)
        except BackendUnavailable as exc:
            self._faults.inc()
            if not self._fail_open:
                ctx.decide(self.name, "rejected", "backend_unavailable", result="error")
                raise backend_unavailable(self.name) from exc
            log.warning("idempotency store unavailable, running without replay protection: %s", exc)
            ctx.decide(self.name, "allowed", "fail_open", result="error")
            await self.app(scope, receive, send)
            return
        if claim.state != "new":
            await self._answer_claimed(ctx, claim, send)
            return
        ctx.decide(self.name, "allowed", "new", result="new")
        await self._first_attempt(ctx, record, token, scope, receive, send)

    async def _answer_claimed(self, ctx: GuardContext, claim: Claim, send: Send) -> None:
        if claim.state == "done" and claim.response is not None:
            ctx.decide(self.name, "answered", "replayed", result="replayed")
            await claim.response.send(send, [_REPLAYED])
            return
        if claim.state == "mismatch":
            ctx.decide(self.name, "rejected", "mismatch", result="mismatch")
            raise Problem(
                422,
                "idempotency-key-reused",
                "Unprocessable Content",
                "this Idempotency-Key was already used with a different request",
            )
        ctx.decide(self.name, "rejected", "in_flight", result="in_flight")
        raise Problem(
            409,
            "idempotency-key-in-use",
            "Conflict",
            "a request with this Idempotency-Key is still being processed",
            headers=[(b"retry-after", b"1")],
        )

    async def _first_attempt(
        self, ctx: GuardContext, record: str, token: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        recorder = _Recorder(send, self._max_response)
        ended = False

        async def finishing_send(message: Message) -> None:
            # The record ends when the response is complete, before any background work runs:
            # an exception or a long BackgroundTask after that must not release a finished answer.
            nonlocal ended
            await recorder(message)
            if recorder.complete and not ended:
                ended = True
                await self._end(record, token, self._replayable(ctx, recorder))

        try:
            await self.app(scope, receive, finishing_send)
        except BaseException:
            if not ended:
                ended = True
                ctx.decide(self.name, "allowed", "released", result="released")
                await asyncio.shield(self._end(record, token, None))
            raise
        if not ended:  # returned without a complete response (e.g. the client went away)
            ctx.decide(self.name, "allowed", "released", result="released")
            await self._end(record, token, None)

    def _replayable(self, ctx: GuardContext, recorder: _Recorder) -> CachedResponse | None:
        """Only the handler's own final answers are replayed: a 5xx, an inner stage's rejection (402,
        an open circuit...) or a response too large to keep frees the key for a retry instead."""
        response = recorder.response()
        if response is None or response.status >= 500 or ctx.rejected_by is not None:
            ctx.decide(self.name, "allowed", "released", result="released")
            return None
        return response

    async def _end(self, record: str, token: str, response: CachedResponse | None) -> None:
        """Store the response for replay, or release the key; a failure here never fails the request."""
        try:
            if response is None:
                await self._store.release(record, token)
            else:
                await self._store.finish(record, token, response, self._ttl)
        except BackendUnavailable as exc:
            self._faults.inc()
            log.warning("idempotency store unavailable, key held until its lock expires: %s", exc)

    def _parse(self, ctx: GuardContext, raw: bytes, count: int) -> bytes:
        """The key: one header, 1..max_key_length visible ASCII characters (sf-string quotes allowed)."""
        if count > 1:
            self._reject(ctx, "repeated")
        key = raw.strip()
        if len(key) >= 2 and key[0] == 0x22 and key[-1] == 0x22:
            key = key[1:-1]
        if not key or len(key) > self._max_key or not all(0x20 <= b <= 0x7E for b in key):
            self._reject(ctx, "invalid")
        return key

    def _reject(self, ctx: GuardContext, why: str) -> None:
        ctx.decide(self.name, "rejected", f"key_{why}", result=f"key_{why}")
        details = {
            "missing": "this route requires an Idempotency-Key header",
            "repeated": "send exactly one Idempotency-Key header",
            "invalid": f"the Idempotency-Key must be 1 to {self._max_key} visible ASCII characters",
        }
        raise Problem(400, "invalid-idempotency-key", "Bad Request", details[why])


class _Recorder:
    """Forwards the response and keeps a copy up to `max_size` bytes of body."""

    __slots__ = ("_body", "_complete", "_headers", "_max", "_send", "_size", "_status")

    def __init__(self, send: Send, max_size: int) -> None:
        self._send = send
        self._max = max_size
        self._body: list[bytes] | None = []
        self._size = 0
        self._status = 0
        self._headers: tuple[tuple[bytes, bytes], ...] = ()
        self._complete = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = tuple(message.get("headers", ()))
        elif kind == "http.response.body":
            if self._body is not None:
                chunk = message.get("body", b"")
                self._size += len(chunk)
                if self._size > self._max:
                    self._body = None
                else:
                    self._body.append(chunk)
            if not message.get("more_body", False):
                self._complete = True
        else:
            self._body = None
        await self._send(message)

    @property
    def complete(self) -> bool:
        return self._complete

    def response(self) -> CachedResponse | None:
        """The whole response, or None when it did not finish, was too large, or cannot be replayed."""
        if not self._complete or self._body is None:
            return None
        return CachedResponse(self._status, self._headers, b"".join(self._body))


def _digest(*parts: bytes, size: int) -> str:
    digest = hashlib.blake2b(digest_size=size)
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()
