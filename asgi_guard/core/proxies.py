"""Trusted proxies: which ASGI peers may speak for a client (their forwarding headers, X-Forwarded-Host,
an upstream's cost header). One reading of `GuardSettings.trusted_proxies` for every concern."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings (a bare address means a single host) as network objects."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


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


def peer_trusted(scope: Mapping[str, Any], networks: tuple[Network, ...]) -> bool:
    """Whether the ASGI peer (`scope["client"]`) is one of the trusted proxies."""
    client = scope.get("client")
    if not client or not networks:
        return False
    return in_networks(client[0], networks)
