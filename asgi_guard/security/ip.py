"""Client address resolution behind trusted proxies, and CIDR allowlists."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings (a bare address means a single host) as network objects."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def resolve_client_ip(scope: dict[str, Any], trusted: tuple[Network, ...]) -> str:
    """The ASGI peer, unless it is a trusted proxy: then the right-most untrusted X-Forwarded-For hop."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not in_networks(peer, trusted):
        return peer
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        if not in_networks(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer
