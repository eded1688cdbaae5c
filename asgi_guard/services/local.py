"""What every local dev service shares: the cache folder and free loopback ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def cache_root() -> Path:
    """Where downloads, service state and the default outbox live (`ASGI_GUARD_CACHE` overrides)."""
    return Path(os.environ.get("ASGI_GUARD_CACHE", Path.home() / ".cache" / "asgi-guard"))


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
