"""Valkey backend: standalone (valkey://), TLS (valkeys://) and cluster (valkey+cluster://h:p,h:p).

Lua scripts live beside their stage (`stages/<name>/*.lua`, named with `lua()`), are registered once and
run with EVALSHA (valkey-py reloads them on NOSCRIPT). Every call is bounded by
`PoolingConfig.socket_timeout`; a failure or time-out raises BackendUnavailable so the stage can answer
503 or fail open, never hang. `run_many` sends several scripts of one request together (the rate limit
and the cache lookup): one round trip on a standalone server.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.state.base import Backend

T = TypeVar("T")
ScriptCall = tuple[str, Sequence[str], Sequence[Any]]  # (script name, keys, args)
CLUSTER_SCHEMES = ("valkey+cluster", "valkeys+cluster", "redis+cluster", "rediss+cluster")


def lua(package: str, name: str) -> str:
    """A script reference: `<package>:<name>`, the file `<name>.lua` beside that package's code.

    Each concern keeps its Lua next to its stage; the backend only loads what it is handed."""
    return f"{package}:{name}"


def load_script_source(ref: str) -> str:
    """The text of the script `ref` (see `lua`) shipped with the package, after the shared prelude
    (clock.lua: `script_now(arg)`, the server's clock unless a test passes its own)."""
    package, _, name = ref.rpartition(":")
    return _PRELUDE + resources.files(package).joinpath(f"{name}.lua").read_text()


_PRELUDE = resources.files(__package__).joinpath("clock.lua").read_text()


def hash_tag(value: str) -> str:
    """`{value}` with `%`, `{` and `}` percent-encoded: a client cannot steer the cluster slot, and
    two different values never share a tag (stripping the braces made "a{b}" and "ab" one key)."""
    if "{" in value or "}" in value or "%" in value:
        value = value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + value + "}"


class _Connection:
    """The client and loaded scripts one backend and its route views (`bounded`) share."""

    __slots__ = ("client", "scripts")

    def __init__(self) -> None:
        self.client: Any = None
        self.scripts: dict[str, Any] = {}


class ValkeyBackend(Backend):
    """Scripts decide with the server's clock (`TIME`), the one every process shares.

    `clock` is for tests only: when given, every script is handed `clock()` as its time instead
    (`script_now`), so the Lua forms can be driven by the same fake clock as the pure references,
    and keys live `gc_slack` seconds past the point where they stop mattering, so the real time that
    passes during a test never expires a fake-time state. Production leaves both alone.
    """

    kind = "valkey"

    def __init__(
        self,
        url: str,
        pooling: PoolingConfig | None = None,
        key_prefix: str = "ag",
        *,
        clock: Callable[[], float] | None = None,
        gc_slack: float = 1.0,
    ) -> None:
        self.url = url
        self.pooling = pooling or PoolingConfig()
        self.key_prefix = key_prefix
        self.timeout = self.pooling.socket_timeout
        self.is_cluster = urlsplit(url).scheme in CLUSTER_SCHEMES
        self.clock = clock or time.time
        self._script_clock = clock
        self.gc_slack_ms = int(gc_slack * 1000)
        self._shared: _Connection = _Connection()
        self._views: dict[float, ValkeyBackend] = {}

    def bounded(self, timeout: float) -> ValkeyBackend:
        """A view of this backend whose calls default to `timeout` seconds: same client, pool and
        scripts (so one connection pool per app), only the bound differs."""
        if timeout == self.timeout:
            return self
        view = self._views.get(timeout)
        if view is None:
            view = copy.copy(self)
            view.timeout = timeout
            view._views = {}
            self._views[timeout] = view
        return view

    @property
    def _client(self) -> Any:
        return self._shared.client

    @property
    def _scripts(self) -> dict[str, Any]:
        return self._shared.scripts

    @property
    def client(self) -> Any:
        shared = self._shared
        if shared.client is None:
            shared.client = self._connect()
        return shared.client

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

    def script_now(self) -> str:
        """The time argument scripts take: "" (read the server's `TIME`) unless a test clock is set."""
        clock = self._script_clock
        return "" if clock is None else repr(clock())

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

    async def run_many(self, calls: Sequence[ScriptCall], timeout: float | None = None) -> list[Any]:
        """Run several scripts together: each answer, or a BackendUnavailable for a call that failed.

        Standalone: one non-transactional pipeline of EVALSHAs, hence one round trip; it raises
        BackendUnavailable (no answer at all) only when the round trip itself fails. A script the
        server does not know yet (NOSCRIPT: a fresh or flushed server) is loaded and rerun on its
        own; a NOSCRIPT call ran nothing, so rerunning it never applies it twice.

        Cluster: the calls' keys may live in different slots, hence nodes. valkey-py's ClusterPipeline
        would send one pipeline per node concurrently, but a node that fails makes the whole execute()
        raise (after retrying with pauses and a topology refresh), losing the answers the other nodes
        already gave: a failed cache lookup would also cost the rate-limit decision. So on a cluster
        the calls run concurrently and independently (one round trip per call, all at once), and a
        call that fails fails alone.
        """
        if self.is_cluster:
            return list(await asyncio.gather(*(self._settled(call, timeout) for call in calls)))
        pipe = self.client.pipeline(transaction=False)
        for name, keys, args in calls:
            pipe.evalsha(self.script(name).sha, len(keys), *keys, *args)
        results: list[Any] = await self.call(pipe.execute(raise_on_error=False), timeout)
        for i, result in enumerate(results):
            if isinstance(result, Exception):
                from valkey.exceptions import NoScriptError  # valkey is an optional dependency

                results[i] = (
                    await self._settled(calls[i], timeout)
                    if isinstance(result, NoScriptError)
                    else BackendUnavailable(f"valkey: {type(result).__name__}: {result}")
                )
        return results

    async def _settled(self, call: ScriptCall, timeout: float | None) -> Any:
        """run() whose failure is returned, not raised."""
        try:
            return await self.run(*call, timeout)
        except BackendUnavailable as exc:
            return exc

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
        if self._script_clock is not None:
            return self._script_clock()
        seconds, micros = await self.call(self.client.time())
        return float(seconds) + float(micros) / 1_000_000

    async def close(self) -> None:
        shared = self._shared
        if shared.client is not None:
            client, shared.client = shared.client, None
            shared.scripts.clear()
            with contextlib.suppress(Exception):  # closing a dead connection must not fail shutdown
                await client.aclose()
