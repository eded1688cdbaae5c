"""Client address resolution behind trusted proxies, and CIDR allowlists.

Forwarding headers are only believed when the ASGI peer itself is a trusted proxy, and then read right
to left, skipping trusted hops: the right-most hop no trusted proxy vouches for is the client. Anything
to its left was written by the client and proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from asgi_guard.core.proxies import Network, in_networks, parse_address, parse_networks

ForwardedHeader = Literal["x-forwarded-for", "forwarded"]

_XFF = b"x-forwarded-for"
_FORWARDED = b"forwarded"
_DECISION_CACHE = 4096


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
    trusted: tuple[Network, ...],
    header: ForwardedHeader = "x-forwarded-for",
) -> str:
    """The ASGI peer, unless it is a trusted proxy: then the right-most untrusted hop of `header`.

    Only the header the proxies are configured to write is read: a proxy that appends to
    X-Forwarded-For passes a client's own `Forwarded` through untouched, so reading both would let a
    client choose its address. A hop that is not an address (garbage, `unknown`, an obfuscated
    `_node`) ends the walk at the last trusted proxy.
    """
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not in_networks(peer, trusted):
        return peer
    hops = _hops(scope["headers"], header)
    if not hops:
        return peer
    for hop in reversed(hops):
        ip = parse_address(hop)
        if ip is None:
            return peer
        if not any(ip in net for net in trusted):
            return str(ip)
    return peer


class IpAllowlist:
    """A route's CIDR allowlist, with a small per-address decision cache (hot clients cost a lookup)."""

    __slots__ = ("_cache", "_networks")

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = parse_networks(networks)
        self._cache: dict[str, bool] = {}

    def allows(self, address: str) -> bool:
        found = self._cache.get(address)
        if found is not None:
            return found
        ip = parse_address(address)
        allowed = ip is not None and any(ip in net for net in self._networks)
        if len(self._cache) >= _DECISION_CACHE:
            self._cache.clear()
        self._cache[address] = allowed
        return allowed
