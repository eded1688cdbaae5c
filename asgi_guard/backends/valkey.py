"""Valkey backend: standalone (valkey://), TLS (valkeys://) and cluster (valkey+cluster://h:p,h:p).

Lua scripts live in `scripts/*.lua`, are registered once and run with EVALSHA (valkey-py reloads them
on NOSCRIPT). Every call is bounded by `PoolingConfig.socket_timeout`; a failure or time-out raises
BackendUnavailable so the stage can answer 503 or fail open, never hang.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..config.pooling import PoolingConfig
from ..errors import BackendUnavailable
from .base import Backend

T = TypeVar("T")
CLUSTER_SCHEMES = ("valkey+cluster", "valkeys+cluster", "redis+cluster", "rediss+cluster")


def load_script_source(name: str) -> str:
    """The text of `scripts/<name>.lua` shipped with the package."""
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text()


def hash_tag(value: str) -> str:
    """`{value}` with braces removed from value, so a client cannot steer the cluster slot."""
    return "{" + value.replace("{", "").replace("}", "") + "}"


class ValkeyBackend(Backend):
    kind = "valkey"

    def __init__(self, url: str, pooling: PoolingConfig | None = None, key_prefix: str = "ag") -> None:
        self.url = url
        self.pooling = pooling or PoolingConfig()
        self.key_prefix = key_prefix
        self.timeout = self.pooling.socket_timeout
        self.is_cluster = urlsplit(url).scheme in CLUSTER_SCHEMES
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        pool = self.pooling
        common: dict[str, Any] = {
            "socket_timeout": pool.socket_timeout,
            "socket_connect_timeout": pool.connect_timeout,
            "max_connections": pool.max_connections,
        }
        if self.is_cluster:
            from valkey.asyncio.cluster import ClusterNode, ValkeyCluster

            parts = urlsplit(self.url)
            nodes = []
            for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
                host, _, port = hostport.rpartition(":")
                nodes.append(ClusterNode(host.strip("[]") or "127.0.0.1", int(port or 6379)))
            return ValkeyCluster(
                startup_nodes=nodes,
                ssl=parts.scheme.startswith(("valkeys", "rediss")),
                password=parts.password,
                username=parts.username,
                require_full_coverage=True,
                **common,
            )
        from valkey.asyncio import Valkey

        url = self.url.replace("valkeys://", "rediss://", 1).replace("valkey://", "redis://", 1)
        return Valkey.from_url(url, **common)

    def key(self, concern: str, tag: str, *parts: str) -> str:
        """`prefix:concern:{tag}:parts...`: keys of one decision share `tag`, hence one cluster slot."""
        suffix = ":".join(parts)
        base = f"{self.key_prefix}:{concern}:{hash_tag(tag)}"
        return f"{base}:{suffix}" if suffix else base

    def script(self, name: str) -> Any:
        """The registered script `scripts/<name>.lua` (loaded on first use, then EVALSHA)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(load_script_source(name))
        return script

    async def run(
        self, name: str, keys: Sequence[str], args: Sequence[Any], timeout: float | None = None
    ) -> Any:
        """Run one script atomically, in one round trip (two the first time, to load it)."""
        return await self.call(self.script(name)(keys=list(keys), args=list(args)), timeout)

    async def call(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Await a backend call with a bound; any failure becomes BackendUnavailable."""
        try:
            async with asyncio.timeout(timeout or self.timeout):  # no extra task, unlike wait_for
                return await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"valkey: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.call(self.client.ping()))
        except BackendUnavailable:
            return False

    async def now(self) -> float:
        seconds, micros = await self.call(self.client.time())
        return float(seconds) + float(micros) / 1_000_000

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            self._scripts.clear()
            with contextlib.suppress(Exception):  # closing a dead connection must not fail shutdown
                await client.aclose()
