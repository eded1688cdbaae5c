"""CIDR allowlists. The client address they test is resolved once per request by
`asgi_guard.core.proxies` (re-exported here: `resolve_client_ip`, `forwarded_for`)."""

from __future__ import annotations

from collections.abc import Iterable

from asgi_guard.core.proxies import (
    ForwardedHeader,
    forwarded_for,
    parse_address,
    parse_networks,
    resolve_client_ip,
)

__all__ = ["ForwardedHeader", "IpAllowlist", "forwarded_for", "resolve_client_ip"]

_DECISION_CACHE = 4096


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
