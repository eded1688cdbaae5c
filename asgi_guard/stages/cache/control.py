"""HTTP caching rules of a shared cache (RFC 9111, RFC 5861): parsing, storability, freshness, Vary.

Pure functions over raw ASGI header lists, no I/O. Why hand-written: hishel's controller decides for
its own Request/Response models and client-side flows; werkzeug's `parse_cache_control_header`
parses well but brings a WSGI framework for one 20-line grammar (RFC 9111 §5.2: `token [ "="
( token / quoted-string ) ]`). Everything here follows the RFC section named in each docstring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

RawHeaders = Sequence[tuple[bytes, bytes]]

CACHE_CONTROL = b"cache-control"
PRAGMA = b"pragma"
VARY = b"vary"
SET_COOKIE = b"set-cookie"
CONTENT_ENCODING = b"content-encoding"
CONTENT_LENGTH = b"content-length"
CONTENT_TYPE = b"content-type"
EXPIRES = b"expires"
DATE = b"date"
AGE = b"age"
ETAG = b"etag"
LAST_MODIFIED = b"last-modified"
AUTHORIZATION = b"authorization"
COOKIE = b"cookie"
IF_NONE_MATCH = b"if-none-match"
IF_MODIFIED_SINCE = b"if-modified-since"

# The response fields the rules below read; `fields` collects them in one pass over the headers.
RESPONSE_FIELDS = frozenset(
    {CACHE_CONTROL, SET_COOKIE, VARY, EXPIRES, DATE, AGE, ETAG}
    | {CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING}
)
Fields = Mapping[bytes, bytes]  # lower-case field name -> its values joined with ", "


def fields(headers: RawHeaders, names: frozenset[bytes] = RESPONSE_FIELDS) -> dict[bytes, bytes]:
    """The values of `names` (lower-case) found in `headers`, each field's values joined with ", "
    (RFC 9110 §5.3), in one pass (a response is read once, not once per rule). Names match in any
    case: ASGI asks apps for lower-case names, but an app that sends `Set-Cookie` or `Vary` must
    not slip past the rules (a stored cookie would be replayed to every client)."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name not in names:
            name = name.lower()
            if name not in names:
                continue
        prior = found.get(name)
        found[name] = value if prior is None else prior + b", " + value
    return found


def header(headers: RawHeaders, name: bytes) -> bytes | None:
    """All values of `name` (lower-case; matched in any case) joined with ", " (RFC 9110 §5.3), or
    None when absent: `fields` for one name."""
    return fields(headers, frozenset((name,))).get(name)


def parse_cache_control(value: bytes | None) -> dict[str, str | None]:
    """Cache-Control directives (RFC 9111 §5.2): lower-case name -> argument (unquoted) or None.

    A repeated directive keeps its first value; garbage between commas is skipped, never raised."""
    found: dict[str, str | None] = {}
    if not value:
        return found
    text = value.decode("latin-1")
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] not in ",=":
            j += 1
        name = text[i:j].strip().lower()
        arg: str | None = None
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] == " ":
                j += 1
            if j < n and text[j] == '"':
                j += 1
                out: list[str] = []
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n:
                        j += 1
                    out.append(text[j])
                    j += 1
                arg = "".join(out)
                while j < n and text[j] != ",":
                    j += 1
            else:
                k = j
                while j < n and text[j] != ",":
                    j += 1
                arg = text[k:j].strip()
        if name and name not in found:
            found[name] = arg
        i = j + 1
    return found


def seconds(value: str | None) -> int | None:
    """A delta-seconds argument (RFC 9111 §1.2.2); None when missing or invalid, capped at 2^31."""
    if value is None or not value.isdigit():
        return None
    return min(int(value), 2_147_483_648)


def http_date(value: bytes | None) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as epoch seconds, None when absent or invalid."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def split_tokens(value: bytes | None) -> list[str]:
    """A comma-separated list of tokens (Vary, Cache-Tag), lower-cased, empties dropped."""
    if not value:
        return []
    return [t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip()]


# -- requests ------------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class RequestDirectives:
    """What the request's Cache-Control (or Pragma, RFC 9111 §5.4) asks of the cache."""

    refresh: bool  # no-cache / max-age=0 / Pragma: no-cache: do not answer from the cache
    no_store: bool  # do not store the response (§5.2.1.5)
    max_age: int | None  # accept an entry only up to this age (§5.2.1.1)


NO_DIRECTIVES = RequestDirectives(False, False, None)


def request_directives(headers: RawHeaders) -> RequestDirectives:
    control_raw = pragma = None
    for name, value in headers:
        if name == CACHE_CONTROL:
            control_raw = value if control_raw is None else control_raw + b"," + value
        elif name == PRAGMA:
            pragma = value
    if control_raw is None:
        if pragma is not None and b"no-cache" in pragma.lower():
            return RequestDirectives(True, False, None)
        return NO_DIRECTIVES
    control = parse_cache_control(control_raw)
    max_age = seconds(control.get("max-age")) if "max-age" in control else None
    refresh = "no-cache" in control or max_age == 0
    return RequestDirectives(refresh, "no-store" in control, max_age)


# -- responses -----------------------------------------------------------------------------------
# A response with none of these fields is stored for the route TTL (the rules below, short-cut).
_PLAIN = frozenset({CACHE_CONTROL, SET_COOKIE, VARY, EXPIRES, AGE})


@dataclass(slots=True)
class Storability:
    """The verdict on one response (RFC 9111 §3, §3.5, §4.2.1, RFC 5861)."""

    ok: bool
    reason: str  # why not (for Cache-Status detail), "" when ok
    lifetime: float = 0.0  # freshness lifetime, seconds, capped by the route TTL
    swr: float = 0.0  # stale-while-revalidate window, seconds
    sie: float = 0.0  # stale-if-error window, seconds
    revalidate: bool = False  # must-revalidate / proxy-revalidate: never serve stale
    with_auth: bool = False  # may answer requests that carry credentials (public, s-maxage, ...)
    strip_cookie: bool = False  # store without Set-Cookie (the route opted in)
    initial_age: float = 0.0  # the response's own Age


def storability(
    status: int,
    response: Fields,
    *,
    route_ttl: float,
    stale_cap: float,
    per_principal: bool,
    credentialed: bool,
    allow: frozenset[str],
    now: float,
) -> Storability:
    """May a shared cache store a response (its `fields`), and for how long?

    - only 200 (the stage's contract; §3 allows more, the cache keeps to what it can replay);
    - never `no-store` (§5.2.2.5), `no-cache` (§5.2.2.4: it would have to revalidate every use),
      `private` (§5.2.2.7, unless the key carries the verified principal), `Set-Cookie`, `Vary: *`
      (§4.1), nor a zero lifetime, unless `allow` names that header ("no-store", "private",
      "set-cookie"; a Set-Cookie response is then stored without its Set-Cookie);
    - a response to a request with credentials the guard did not verify only when it says
      `public`, `s-maxage` or `must-revalidate` (§3.5);
    - lifetime: `s-maxage`, else `max-age`, else `Expires` - `Date` (§4.2.1), else the route TTL;
      always capped by the route TTL.
    """
    if status != 200:
        return Storability(False, "status")
    if _PLAIN.isdisjoint(response):  # none of the fields below: what most handlers send
        if credentialed:
            return Storability(False, "credentials")
        if route_ttl <= 0:
            return Storability(False, "stale")
        return Storability(True, "", float(route_ttl), with_auth=per_principal)
    control = parse_cache_control(response.get(CACHE_CONTROL))
    if "no-store" in control and "no-store" not in allow:
        return Storability(False, "no-store")
    if "no-cache" in control:
        return Storability(False, "no-cache")
    if "private" in control and not per_principal and "private" not in allow:
        return Storability(False, "private")
    strip_cookie = False
    if response.get(SET_COOKIE) is not None:
        if "set-cookie" not in allow:
            return Storability(False, "set-cookie")
        strip_cookie = True
    if "*" in split_tokens(response.get(VARY)):
        return Storability(False, "vary-star")
    explicit = "public" in control or "s-maxage" in control or "must-revalidate" in control
    if credentialed and not explicit:
        return Storability(False, "credentials")
    lifetime: float | None = seconds(control.get("s-maxage"))
    if lifetime is None:
        lifetime = seconds(control.get("max-age"))
    if lifetime is None:
        expires_raw = response.get(EXPIRES)
        if expires_raw is not None:
            expires = http_date(expires_raw)
            date = http_date(response.get(DATE)) or now
            lifetime = 0.0 if expires is None else max(0.0, expires - date)  # invalid Expires: stale
    if lifetime is None:
        lifetime = route_ttl
    lifetime = min(float(lifetime), route_ttl)
    revalidate = "must-revalidate" in control or "proxy-revalidate" in control or "s-maxage" in control
    swr = 0.0 if revalidate else float(min(seconds(control.get("stale-while-revalidate")) or 0, stale_cap))
    sie = 0.0 if revalidate else float(min(seconds(control.get("stale-if-error")) or 0, stale_cap))
    if lifetime <= 0 and not swr and not sie:
        return Storability(False, "stale")
    age_raw = response.get(AGE)
    initial_age = float(seconds(age_raw.decode("latin-1").strip()) or 0) if age_raw else 0.0
    return Storability(
        True,
        "",
        lifetime,
        swr,
        sie,
        revalidate,
        explicit or per_principal,
        strip_cookie,
        initial_age,
    )


def is_stream(headers: Fields) -> bool:
    """A response (its `fields`) of unknown length that streams: `text/event-stream`, or no
    Content-Length."""
    kind = headers.get(CONTENT_TYPE)
    if kind is not None and kind.split(b";", 1)[0].strip().lower() == b"text/event-stream":
        return True
    return CONTENT_LENGTH not in headers


# -- Vary (RFC 9111 §4.1) ------------------------------------------------------------------------
def vary_names(headers: Fields) -> tuple[str, ...]:
    """The request headers the response (its `fields`) varies on, sorted, plus `accept-encoding`
    whenever the body is encoded (so compressed and identity bodies never cross, even when Vary
    forgets it)."""
    vary = headers.get(VARY)
    if vary is None and CONTENT_ENCODING not in headers:
        return ()
    names = set(split_tokens(vary))
    if CONTENT_ENCODING in headers:
        names.add("accept-encoding")
    return tuple(sorted(names))


def _digest(values: list[bytes]) -> str:
    """A request header's values exactly as sent, in order, each length-prefixed: nothing is
    normalised. RFC 9111 §4.1 lets a cache normalise (whitespace, case, a repeated field joined),
    but a request the app reads differently (`Accept-Language: FR` against an app matching "fr";
    an empty first value against a later one, where the app reads the first) would then select the
    variant another request filled: one client poisoning what others are served."""
    return hashlib.blake2b(b"".join(len(v).to_bytes(4, "big") + v for v in values), digest_size=8).hexdigest()


def _digests(headers: RawHeaders) -> dict[str, str]:
    merged: dict[str, list[bytes]] = {}
    for key, value in headers:
        merged.setdefault(key.decode("latin-1").lower(), []).append(bytes(value))
    return {name: _digest(values) for name, values in merged.items()}


class Fingerprint(Mapping[str, str]):
    """Each request header's exact values (see `_digest`) as a 16-hex digest: what selects a
    variant. Each digest is made on first use, so a route whose responses never vary never pays for
    one, and one that varies pays for its Vary names only. Digests, not values, select variants,
    so a lookup never hands a cookie or a token to a store."""

    __slots__ = ("_all", "_headers", "_known")

    def __init__(self, headers: RawHeaders) -> None:
        self._headers = headers
        self._known: dict[str, str | None] = {}  # name -> digest (None: no such header)
        self._all: dict[str, str] | None = None

    def _get(self, name: str) -> str | None:
        known = self._known
        if name in known:
            return known[name]
        wanted = name.lower().encode("latin-1")
        values = [bytes(v) for k, v in self._headers if k == wanted or k.lower() == wanted]
        digest = _digest(values) if values else None
        known[name] = digest
        return digest

    def __getitem__(self, name: str) -> str:
        digest = self._get(name)
        if digest is None:
            raise KeyError(name)
        return digest

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._get(name) is not None

    def _every(self) -> dict[str, str]:
        if self._all is None:
            self._all = _digests(self._headers)
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())


def fingerprint(headers: RawHeaders) -> Fingerprint:
    return Fingerprint(headers)


_NO_VARY = hashlib.sha1(b"").hexdigest()  # the variant id of a response without Vary


def secondary(names: Iterable[str], prints: Mapping[str, str]) -> str:
    """The variant id for `names` (sorted) under a request's `fingerprint`: SHA-1 of
    `name=digest` (or `name!` when absent) lines: what a Valkey lookup sends (cache_get.lua)."""
    if not names:
        return _NO_VARY
    lines = [f"{n}={prints[n]}" if n in prints else f"{n}!" for n in names]
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()  # an id, not a MAC


# -- validators (RFC 9110 §13.1) -----------------------------------------------------------------
def _etags(value: bytes) -> list[bytes]:
    return [t.strip().removeprefix(b"W/") for t in value.split(b",") if t.strip()]


def not_modified(request: RawHeaders, stored: RawHeaders) -> bool:
    """Whether a stored 200 answers the request's conditional GET with 304: If-None-Match by weak
    comparison (§13.1.2), else If-Modified-Since against Last-Modified (§13.1.3)."""
    inm = ims_raw = None
    for name, value in request:
        if name == IF_NONE_MATCH:
            inm = value if inm is None else inm + b"," + value
        elif name == IF_MODIFIED_SINCE:
            ims_raw = value
    if inm is None and ims_raw is None:
        return False
    if inm is not None:
        etag = header(stored, ETAG)
        if inm.strip() == b"*":
            return True
        return etag is not None and etag.strip().removeprefix(b"W/") in _etags(inm)
    ims = http_date(ims_raw)
    if ims is None:
        return False
    modified = http_date(header(stored, LAST_MODIFIED))
    return modified is not None and modified <= ims


# Headers a 304 carries from the stored response (RFC 9110 §15.4.5).
NOT_MODIFIED_KEEP = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"}
)


def meta(s: Storability, names: tuple[str, ...]) -> dict[str, Any]:
    """What a stored entry remembers of its verdict (JSON-safe)."""
    return {
        "l": s.lifetime,
        "w": s.swr,
        "e": s.sie,
        "r": int(s.revalidate),
        "a": int(s.with_auth),
        "i": s.initial_age,
        "v": list(names),
    }
