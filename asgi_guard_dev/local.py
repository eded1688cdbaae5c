"""What every local dev service shares: the cache folder and free loopback ports."""

from __future__ import annotations

import socket

from asgi_guard.core.paths import cache_root

__all__ = ["cache_root", "free_port", "is_port_free"]


def is_port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster_bus: bool = False) -> int:
    """A loopback port that is free now (and, for cluster nodes, whose +10000 bus port is too)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 < 65535 and is_port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")
