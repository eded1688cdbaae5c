"""A JWKS client that never blocks the event loop and never hangs.

The key set is fetched in a worker thread with a hard time-out, cached for `cache_ttl` seconds, and
refetched on an unknown `kid` at most once per `min_refresh_interval` (so a client sending random kids
cannot hammer the identity provider). Concurrent requests share one fetch. When a refresh fails and a
previous key set is held, that one keeps serving; with no key set at all the caller gets
JwksUnavailable (a fast 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt

from asgi_guard.core.errors import ConfigError

log = logging.getLogger("asgi_guard.security")

_KTY_FAMILY = {"RSA": "RSA", "EC": "EC", "OKP": "OKP"}
_ALG_FAMILY = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "RSA"),
    **dict.fromkeys(("ES256", "ES256K", "ES384", "ES512", "ES521"), "EC"),
    "EdDSA": "OKP",
}


class JwksUnavailable(Exception):
    """The key set could not be fetched (network, status, time-out, garbage) and none is cached."""


def _http_get(url: str, timeout: float, max_bytes: int) -> bytes:
    """Runs in a worker thread: one bounded GET."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "asgi-guard"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # scheme checked in __init__
        data: bytes = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"JWKS document exceeds {max_bytes} bytes")
    return data


def parse_jwks(data: bytes) -> list[dict[str, Any]]:
    """The usable signature keys of a JWKS document (symmetric and encryption keys are dropped)."""
    document = json.loads(data)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in _KTY_FAMILY or jwk.get("use", "sig") != "sig":
            continue
        try:
            jwt.PyJWK(jwk)
        except jwt.PyJWTError:
            continue
        keys.append(jwk)
    if not keys:
        raise ValueError("JWKS document holds no usable signature keys")
    return keys


class JwksClient:
    """Keys of one `jwks_url`, shared by every route of an app (the runtime service `security.jwks`)."""

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float = 300.0,
        min_refresh_interval: float = 10.0,
        timeout: float = 2.0,
        failure_backoff: float = 1.0,
        max_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"GuardSettings.jwks_url must be an http(s) URL, not {url!r}")
        self.url = url
        self.cache_ttl = cache_ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self.failure_backoff = failure_backoff
        self.max_bytes = max_bytes
        self.clock = clock
        self.fetches = 0
        self._by_kid: dict[str, dict[str, Any]] = {}
        self._keys: list[dict[str, Any]] = []
        self._prepared: dict[tuple[int, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._failed = False
        self._inflight: asyncio.Future[None] | None = None

    async def prefetch(self) -> None:
        try:
            await self._refresh()
        except JwksUnavailable as exc:
            log.warning("JWKS prefetch from %s failed: %s", self.url, exc)

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The key for `kid` (or the only key, when the token has no kid) bound to `alg`, or None."""
        now = self.clock()
        if self._fetched_at is None:
            if (
                self._failed
                and self._attempted_at is not None
                and now - self._attempted_at < self.failure_backoff
            ):
                raise JwksUnavailable("the JWKS endpoint failed moments ago")
            await self._refresh()
        elif now - self._fetched_at >= self.cache_ttl and self._may_refresh(now):
            try:
                await self._refresh()
            except JwksUnavailable as exc:
                log.warning("JWKS refresh from %s failed, serving the cached keys: %s", self.url, exc)
        jwk = self._find(kid)
        if jwk is None and kid is not None and self._may_refresh(now):
            await self._refresh()
            jwk = self._find(kid)
        if jwk is None:
            return None
        return self._bind(jwk, alg)

    def _may_refresh(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refresh_interval

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._by_kid.get(kid)
        return self._keys[0] if len(self._keys) == 1 else None

    def _bind(self, jwk: dict[str, Any], alg: str) -> jwt.PyJWK | None:
        """A PyJWK bound to the token's algorithm, if that algorithm fits the key at all."""
        slot = (id(jwk), alg)
        found = self._prepared.get(slot)
        if found is not None:
            return found
        if _ALG_FAMILY.get(alg) != _KTY_FAMILY.get(jwk.get("kty", "")) or jwk.get("alg", alg) != alg:
            return None
        try:
            found = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            return None
        self._prepared[slot] = found
        return found

    async def _refresh(self) -> None:
        """Fetch once for every concurrent caller; a cancelled request does not cancel the fetch."""
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = asyncio.ensure_future(self._fetch())
            inflight.add_done_callback(self._done)
        await asyncio.shield(inflight)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._inflight = None
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not logged as unhandled

    async def _fetch(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            data = await asyncio.wait_for(
                asyncio.to_thread(_http_get, self.url, self.timeout, self.max_bytes), self.timeout + 0.5
            )
            keys = parse_jwks(data)
        except Exception as exc:  # any failure of the IdP is the same 503 to us
            self._failed = True
            raise JwksUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._failed = False
        self._keys = keys
        self._by_kid = {jwk["kid"]: jwk for jwk in keys if isinstance(jwk.get("kid"), str)}
        self._prepared = {}
        self._fetched_at = self.clock()
