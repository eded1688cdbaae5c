"""Trusted proxies and the client address: which ASGI peers may speak for a client (their forwarding
header, X-Forwarded-Host, an upstream's cost header), and who the client then is. One reading of
`GuardSettings.trusted_proxies` for every concern: rate-limit keys, idempotency and cache owners, the
console's throttle, IP allowlists, telemetry.

Entries are CIDRs (a bare address is one host) or `"unix"`: the peer on a unix-domain socket (`uvicorn
--uds`, `hypercorn --bind unix:`, gunicorn's `--bind unix:`), which has no address (ASGI `client` is
None). A peer with no address that is not trusted is `UNKNOWN`, and every such request looks alike:
`ClientResolver` logs it once per process, and the stages that would hand one client's stored state to
another (idempotency) refuse to key on it.

Forwarding headers are only believed when the peer itself is trusted, and then read right to left,
skipping trusted hops: the right-most hop no trusted proxy vouches for is the client. Anything to its
left was written by the client and proves nothing.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]

UNIX = "unix"
"""The `trusted_proxies` entry for the peer on a unix-domain socket."""
UNKNOWN = "unknown"
"""The client address when the peer has none (a unix socket) and is not a trusted proxy."""

log = logging.getLogger("asgi_guard.proxies")
_XFF = b"x-forwarded-for"
_FORWARDED = b"forwarded"


class TrustedProxies:
    """`trusted_proxies` parsed: the CIDRs, and whether the unix-socket peer is trusted. False when empty."""

    __slots__ = ("networks", "unix")

    def __init__(self, networks: tuple[Network, ...] = (), unix: bool = False) -> None:
        self.networks = networks
        self.unix = unix

    def __bool__(self) -> bool:
        return self.unix or bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks] + ([UNIX] if self.unix else [])})"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings (a bare address means a single host) as network objects; ValueError on garbage."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def parse_proxies(values: Iterable[str] | TrustedProxies) -> TrustedProxies:
    """`trusted_proxies` entries: CIDRs, a bare address, or `"unix"` (any case).

    Raises ValueError naming the entry that is none of these.
    """
    if isinstance(values, TrustedProxies):
        return values
    networks: list[Network] = []
    unix = False
    for value in values:
        text = value.strip()
        if text.lower() == UNIX:
            unix = True
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: {value!r} is neither a CIDR nor an address, nor {UNIX!r} "
                "(the peer on a unix socket)"
            ) from None
    return TrustedProxies(tuple(networks), unix)


def parse_address(value: str) -> Address | None:
    """An address, or None for garbage. IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes plain IPv4."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    ip = parse_address(address)
    if ip is None:
        return False
    return any(ip in net for net in networks)


def peer_address(scope: Mapping[str, Any]) -> str | None:
    """The ASGI peer's host (`scope["client"][0]`), or None when it has none: a unix-domain socket
    (uvicorn and hypercorn give `client` None there; an empty host counts the same)."""
    client = scope.get("client")
    if not client:
        return None
    return client[0] or None


def peer_trusted(scope: Mapping[str, Any], trusted: TrustedProxies | tuple[Network, ...]) -> bool:
    """Whether the ASGI peer is one of the trusted proxies (`"unix"` trusts a peer with no address)."""
    proxies = trusted if isinstance(trusted, TrustedProxies) else TrustedProxies(trusted)
    peer = peer_address(scope)
    if peer is None:
        return proxies.unix
    return bool(proxies.networks) and in_networks(peer, proxies.networks)


def _strip_port(value: str) -> str:
    """`[2001:db8::1]:4711` -> `2001:db8::1`, `192.0.2.1:80` -> `192.0.2.1`, bare IPv6 untouched."""
    value = value.strip().strip('"').strip()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def forwarded_for(value: str) -> list[str]:
    """The `for=` node of each element of an RFC 7239 `Forwarded` header, in order.

    An element without `for=` yields "" (an unknown hop), so the chain keeps its length.
    """
    hops: list[str] = []
    for element in value.split(","):
        node = ""
        for pair in element.split(";"):
            name, sep, raw = pair.partition("=")
            if sep and name.strip().lower() == "for":
                node = _strip_port(raw)
                break
        hops.append(node)
    return hops


def _hops(headers: Iterable[tuple[bytes, bytes]], header: ForwardedHeader) -> list[str] | None:
    """The chain from the chosen header (several header lines join in order), or None if absent."""
    wanted = _XFF if header == "x-forwarded-for" else _FORWARDED
    hops: list[str] | None = None
    for name, value in headers:
        if name == wanted:
            text = value.decode("latin-1")
            parts = forwarded_for(text) if wanted == _FORWARDED else [_strip_port(p) for p in text.split(",")]
            hops = parts if hops is None else hops + parts
    return hops


def resolve_client_ip(
    scope: Mapping[str, Any],
    trusted: TrustedProxies | tuple[Network, ...],
    header: ForwardedHeader = "x-forwarded-for",
) -> str:
    """The ASGI peer, unless it is a trusted proxy: then the right-most untrusted hop of `header`.

    A peer with no address is `UNKNOWN`, or, with `"unix"` trusted, a proxy like any other. Only the
    header the proxies are configured to write is read: a proxy that appends to X-Forwarded-For
    passes a client's own `Forwarded` through untouched, so reading both would let a client choose
    its address. A hop that is not an address (garbage, `unknown`, an obfuscated `_node`) ends the
    walk at the last trusted proxy (`UNKNOWN` when that proxy is the unix-socket peer).
    """
    proxies = trusted if isinstance(trusted, TrustedProxies) else TrustedProxies(trusted)
    peer = peer_address(scope)
    if peer is None:
        if not proxies.unix:
            return UNKNOWN
        peer = UNKNOWN
    elif not proxies.networks or not in_networks(peer, proxies.networks):
        return peer
    hops = _hops(scope["headers"], header)
    if not hops:
        return peer
    networks = proxies.networks
    for hop in reversed(hops):
        ip = parse_address(hop)
        if ip is None:
            return peer
        if not any(ip in net for net in networks):
            return str(ip)
    return peer


class ClientResolver:
    """`resolve_client_ip` with the settings bound, for every concern that needs the client's address:
    `resolver(scope)` -> the address (`resolver.resolve` is the same, a plain function: cheaper per
    request).

    The first request whose client stays `UNKNOWN` logs one warning per process naming the fix.
    """

    __slots__ = ("header", "resolve", "trusted")

    warned: ClassVar[bool] = (
        False  # per process: one warning is enough to act on, a flood would hide the rest
    )

    def __init__(
        self, trusted: Iterable[str] | TrustedProxies, header: ForwardedHeader = "x-forwarded-for"
    ) -> None:
        self.trusted = parse_proxies(trusted)
        self.header: ForwardedHeader = header
        self.resolve: Callable[[Mapping[str, Any]], str] = _resolver(self.trusted, header)

    def __call__(self, scope: Mapping[str, Any]) -> str:
        return self.resolve(scope)


def _resolver(trusted: TrustedProxies, header: ForwardedHeader) -> Callable[[Mapping[str, Any]], str]:
    def resolved(scope: Mapping[str, Any]) -> str:
        address = resolve_client_ip(scope, trusted, header)
        if address == UNKNOWN and not ClientResolver.warned:
            ClientResolver.warned = True
            _warn_unknown(trusted)
        return address

    if trusted:
        return resolved

    def direct(scope: Mapping[str, Any]) -> str:  # no proxies: the peer, unless it has no address
        client = scope.get("client")
        if client:
            host: str = client[0]
            if host:
                return host
        return resolved(scope)

    return direct


def _warn_unknown(trusted: TrustedProxies) -> None:
    if trusted.unix:
        log.warning(
            "asgi-guard: the trusted unix-socket proxy sent no usable forwarding header: such clients "
            "share one address (%r) for rate limits, and their idempotent requests are refused (503); "
            "make the proxy write the client into the forwarded_header asgi-guard reads",
            UNKNOWN,
        )
        return
    log.warning(
        "asgi-guard: a request came from a peer with no address (a unix socket, e.g. uvicorn --uds): "
        "every such client looks alike (%r): they share rate-limit buckets, and anonymous idempotent "
        "requests are refused (503). If a proxy you trust listens on that socket, set "
        'trusted_proxies=["unix"] (ASGI_GUARD_TRUSTED_PROXIES=\'["unix"]\') so its forwarding header names '
        "the client",
        UNKNOWN,
    )
