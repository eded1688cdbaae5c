"""Valkey backend: standalone (valkey://), TLS (valkeys://), cluster (valkey+cluster://h:p,h:p) and
Sentinel (valkey+sentinel://h:p[,h:p]/<service>[?db=N]).

Lua scripts live beside their stage (`stages/<name>/*.lua`, named with `lua()`), are registered once and
run with EVALSHA (valkey-py reloads them on NOSCRIPT). Every call is bounded by
`PoolingConfig.socket_timeout`; a failure or time-out raises BackendUnavailable so the stage can answer
503 or fail open, never hang. `run_many` sends several scripts of one request together (the rate limit
and the cache lookup): one round trip on a standalone server.

Connections (standalone): valkey-py's `BlockingConnectionPool`, so a call that finds all
`max_connections` busy waits up to `pool_timeout` instead of failing at once; connections idle longer
than `health_check_interval` are PINGed before use. A script declared `retry_safe` (see `lua`) whose
connection fails is run once more after valkey-py's jittered backoff, so one call is bounded by about
twice `socket_timeout`; which scripts are retry-safe, and why, is in docs/deployment-workers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from importlib import resources
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from asgi_guard.core.errors import BackendUnavailable, ConfigError
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.state.base import Backend
from asgi_guard.state.keys import hash_tag, join
from asgi_guard.state.pipelining import AutoPipeline

T = TypeVar("T")
ScriptCall = tuple[str, Sequence[str], Sequence[Any]]  # (script name, keys, args)
CLUSTER_SCHEMES = ("valkey+cluster", "valkeys+cluster", "redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("valkey+sentinel", "valkeys+sentinel", "redis+sentinel", "rediss+sentinel")


_RETRY_SAFE: set[str] = set()


def lua(package: str, name: str, *, retry_safe: bool = False) -> str:
    """A script reference: `<package>:<name>`, the file `<name>.lua` beside that package's code.

    Each concern keeps its Lua next to its stage; the backend only loads what it is handed.
    `retry_safe`: running the script a second time with the same keys and arguments, after a first run
    whose reply was lost, leaves the same state and gives the caller an equally valid answer (or one
    only stricter, never looser). Only such scripts are retried after a connection error."""
    ref = f"{package}:{name}"
    if retry_safe:
        _RETRY_SAFE.add(ref)
    return ref


async def _async_no_retry_after_waiting(error: Exception) -> None:
    """valkey-py's Retry `fail` hook: a pool wait that timed out is not retried (the bound holds)."""
    if isinstance(error.__cause__, TimeoutError):
        raise error


def load_script_source(ref: str) -> str:
    """The text of the script `ref` (see `lua`, or `fused`) shipped with the package, after the
    shared prelude (clock.lua: `script_now(arg)`, the server's clock unless a test passes its own)."""
    if ref.startswith(_FUSED):
        return _fused_source(ref[len(_FUSED) :].split("|"))
    return _PRELUDE + _body(ref)


def _body(ref: str) -> str:
    package, _, name = ref.rpartition(":")
    return resources.files(package).joinpath(f"{name}.lua").read_text()


_PRELUDE = resources.files(__package__).joinpath("clock.lua").read_text()
_FUSED = "fused:"
# The fused script's dispatcher. ARGV: [1] the calls' layout, one comma-separated argument (fewer
# arguments to pack and send): per call, its script's index, its key count and its argument count;
# then every call's arguments in order. KEYS: every call's keys in order. Each call runs in a pcall,
# so one call's error is its own answer, not the others'.
# Answer: a flat list, per call 1, answer (nil as false) or 0, error text.
_DISPATCH = """
local layout = {}
for part in string.gmatch(ARGV[1], '[^,]+') do layout[#layout + 1] = tonumber(part) end
local n = #layout / 3
local out = {}
local ki, ai = 0, 1
for i = 1, n do
  local at = 3 * i - 2
  local nk, na = layout[at + 1], layout[at + 2]
  local keys, args = {}, {}
  for j = 1, nk do keys[j] = KEYS[ki + j] end
  for j = 1, na do args[j] = ARGV[ai + j] end
  ki, ai = ki + nk, ai + na
  local ok, answer = pcall(__scripts[layout[at]], keys, args)
  if ok and not (type(answer) == 'table' and answer.err) then
    if answer == nil then answer = false end
    out[2 * i - 1], out[2 * i] = 1, answer
  else
    out[2 * i - 1], out[2 * i] = 0, tostring(type(answer) == 'table' and answer.err or answer)
  end
end
return out
"""


def fused(names: Sequence[str]) -> str:
    """The script ref that runs the distinct scripts of `names` as one script (see `run_many`)."""
    return _FUSED + "|".join(sorted(set(names)))


def _fused_source(refs: Sequence[str]) -> str:
    """One script holding each of `refs` as a function of (KEYS, ARGV), and `_DISPATCH`. They share
    one prelude, so one TIME serves every call of the run."""
    parts = [_PRELUDE, "local __scripts = {}"]
    for i, ref in enumerate(refs, 1):
        parts.append(f"__scripts[{i}] = function(KEYS, ARGV)\n{_body(ref)}\nend")
    return "\n".join([*parts, _DISPATCH])


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _Connection:
    """The client and loaded scripts one backend and its route views (`bounded`) share."""

    __slots__ = ("client", "gate", "pipeline", "retry", "scripts")

    def __init__(self) -> None:
        self.client: Any = None
        self.pipeline: AutoPipeline | None = None  # standalone / Sentinel with `auto_pipeline`
        self.scripts: dict[str, Any] = {}
        self.retry: Any = None  # valkey-py Retry for retry-safe scripts (built with the client)
        self.gate: asyncio.Semaphore | None = None  # cluster: at most max_connections calls at once


class Rider(Protocol):
    """A script call of an inner stage that rides an outer stage's round trip (see `Riders`)."""

    async def board(self, scope: Any) -> ScriptCall | None:
        """The call to send with the carrier's for this request, or None (nothing to fetch)."""

    def land(self, scope: Any, answer: Any) -> None:
        """The call's answer (or a BackendUnavailable when it alone failed): keep it for later."""

    async def abandon(self, scope: Any) -> None:
        """The carrier stops the request here: release what the call took (locks)."""


class Riders:
    """Neutral meeting point of stages that share a round trip, registered at pipeline build time.

    An inner stage registers a `Rider` for a route (`register`); the outer stage that makes a
    round trip anyway (the carrier) calls `carry` with its call alone and its call with one
    other. Neither stage imports the other: the rate limiter carries the cache lookup, so a cache
    hit behind a rate limit costs one round trip (issue 10, rule 6). One rider per route.
    """

    __slots__ = ("_by_route",)

    def __init__(self) -> None:
        self._by_route: dict[Hashable, Rider] = {}

    def register(self, route: Hashable, rider: Rider) -> None:
        if self._by_route.setdefault(route, rider) is not rider:
            raise ValueError(f"route {route!r} already has a rider")

    def get(self, route: Hashable) -> Rider | None:
        return self._by_route.get(route)

    async def carry(
        self,
        route: Hashable,
        scope: Any,
        alone: Callable[[], Awaitable[T]],
        together: Callable[[ScriptCall], Awaitable[tuple[T, Any]]],
    ) -> T:
        """The carrier's result, with the route's rider (if any, and if it boards) on board."""
        rider = self._by_route.get(route)
        call = None if rider is None else await rider.board(scope)
        if call is None:
            return await alone()
        result, answer = await together(call)
        rider.land(scope, answer)  # type: ignore[union-attr]
        return result

    async def abandon(self, route: Hashable, scope: Any) -> None:
        """The carrier rejects the request: its rider releases what it took."""
        rider = self._by_route.get(route)
        if rider is not None:
            await rider.abandon(scope)


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
        self.is_sentinel = urlsplit(url).scheme in SENTINEL_SCHEMES
        self.clock = clock or time.time
        self._script_clock = clock
        self.gc_slack_ms = int(gc_slack * 1000)
        self._shared: _Connection = _Connection()
        self._views: dict[float, ValkeyBackend] = {}
        self.riders = Riders()  # shared with the route views (`bounded` copies the reference)

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
            if self.pooling.auto_pipeline and not self.is_cluster:
                shared.pipeline = AutoPipeline(shared.client)
        return shared.client

    def _connect(self) -> Any:
        from valkey.asyncio.retry import Retry
        from valkey.backoff import EqualJitterBackoff
        from valkey.exceptions import ConnectionError as ValkeyConnectionError

        pool = self.pooling
        # One retry, with valkey-py's own jittered backoff, of a connection error only (a time-out may
        # mean the server is running the command). The connection's own retry is used for the PING of
        # a health check; commands are retried by `run`, and only retry-safe scripts.
        self._shared.retry = Retry(
            EqualJitterBackoff(cap=max(pool.retry_backoff * 8, 0.001), base=max(pool.retry_backoff, 0.0005)),
            1,
            supported_errors=(ValkeyConnectionError,),
        )
        common: dict[str, Any] = {
            "socket_timeout": pool.socket_timeout,
            "socket_connect_timeout": pool.connect_timeout,
            "health_check_interval": pool.health_check_interval,
        }
        if self.is_cluster:  # the cluster client keeps its own retry and topology refresh
            from valkey.asyncio.cluster import ClusterNode, ValkeyCluster

            # valkey-py's cluster client has no blocking pool (a node past max_connections raises
            # MaxConnectionsError at once), so calls wait for one of max_connections slots here.
            self._shared.gate = asyncio.Semaphore(pool.max_connections)

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
                max_connections=pool.max_connections,
                **common,
            )
        if self.is_sentinel:
            return self._connect_sentinel(common)
        from valkey.asyncio import BlockingConnectionPool, Valkey

        url = self.url.replace("valkeys://", "rediss://", 1).replace("valkey://", "redis://", 1)
        connections = BlockingConnectionPool.from_url(
            url,
            max_connections=pool.max_connections,
            timeout=pool.pool_timeout,
            retry=Retry(EqualJitterBackoff(cap=0.1, base=max(pool.retry_backoff, 0.0005)), 1),  # health PINGs
            **common,
        )
        return Valkey.from_pool(connections)

    def _connect_sentinel(self, common: dict[str, Any]) -> Any:
        """`valkey+sentinel://h:p[,h:p]/<service>[?db=N]`: ask the sentinels for the service's current
        primary (valkey-py's SentinelConnectionPool re-asks after a failover). A password in the URL
        is the primary's; the sentinels are asked without one."""
        from valkey.asyncio.sentinel import Sentinel

        parts = urlsplit(self.url)
        service = unquote(parts.path.strip("/"))
        if not service or "/" in service:
            raise ConfigError("valkey+sentinel:// URL needs the service name as its path: /<service_name>")
        query = dict(parse_qsl(parts.query))
        try:
            db = int(query.get("db", "0"))
        except ValueError as exc:
            raise ConfigError(f"valkey+sentinel:// db must be an integer, not {query['db']!r}") from exc
        nodes = []
        for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = hostport.rpartition(":")
            nodes.append((host.strip("[]") or "127.0.0.1", int(port or 26379)))
        timeouts = {
            "socket_timeout": common["socket_timeout"],
            "socket_connect_timeout": common["socket_connect_timeout"],
        }
        sentinel = Sentinel(nodes, sentinel_kwargs=timeouts, **common)  # type: ignore[no-untyped-call]
        return sentinel.master_for(
            service,
            db=db,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            ssl=parts.scheme.startswith(("valkeys", "rediss")),
            max_connections=self.pooling.max_connections,
        )

    def script_now(self) -> str:
        """The time argument scripts take: "" (read the server's `TIME`) unless a test clock is set."""
        clock = self._script_clock
        return "" if clock is None else repr(clock())

    def key(self, concern: str, tag: str | tuple[str, ...], *parts: str) -> str:
        """`prefix:concern:{tag}:parts...`: keys of one decision share `tag`, hence one cluster slot.

        `tag` (one value, or several joined inside the tag) and `parts` are escaped by the one rule
        of `asgi_guard.state.keys`, so no client-chosen value can forge another key."""
        tagged = hash_tag(*tag) if isinstance(tag, tuple) else hash_tag(tag)
        base = f"{self.key_prefix}:{concern}:{tagged}"
        return f"{base}:{join(*parts)}" if parts else base

    def script(self, name: str) -> Any:
        """The registered script `scripts/<name>.lua` (loaded on first use, then EVALSHA)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(load_script_source(name))
        return script

    async def run(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        timeout: float | None = None,
        *,
        retry: bool | None = None,
    ) -> Any:
        """Run one script atomically, in one round trip (two the first time, to load it).

        A retry-safe script (`lua(..., retry_safe=True)`, or `retry=True` for this call) whose
        connection fails is run once more on another connection after a short jittered backoff; a
        time-out is never retried (the server may be running it)."""
        script = self.script(name)
        shared = self._shared
        client, pipeline = shared.client, shared.pipeline

        def send() -> Awaitable[Any]:
            if shared.client is not client:  # closed (shutdown, reload) since the call began:
                raise BackendUnavailable("valkey: the client was closed")  # never reopen it by a retry
            if pipeline is not None:
                return pipeline.send(script, keys, args)
            return script(keys=list(keys), args=list(args))  # type: ignore[no-any-return]

        if not (name in _RETRY_SAFE if retry is None else retry):
            return await self.call(send(), timeout)
        return await self.call_retrying(send, timeout)

    async def call_retrying(self, make: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """`call(make())`, and once more after a connection error (for retry-safe calls only)."""
        self.client  # noqa: B018 - connects, which builds the retry policy too

        async def attempt() -> T:
            return await self.call(make(), timeout, raw=True)

        try:
            result: T = await self._shared.retry.call_with_retry(attempt, _async_no_retry_after_waiting)
            return result
        except asyncio.CancelledError:
            raise
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"valkey: {type(exc).__name__}: {exc}") from exc

    async def run_many(self, calls: Sequence[ScriptCall], timeout: float | None = None) -> list[Any]:
        """Run several scripts together: each answer, or a BackendUnavailable for a call that failed.

        Standalone (and Sentinel): one EVALSHA of a fused script (`fused`) that runs each call as a
        function of its own keys and arguments, in a pcall, in order: one round trip, one command
        sent, one TIME for all, and the calls atomic together. A call whose script errors answers
        that error alone (its writes before the error stay, as with EVALSHA). It raises
        BackendUnavailable (no answer at all) only when the round trip itself fails; it is retried
        as `run` does when every call is retry-safe. valkey-py loads the fused script on NOSCRIPT.

        Cluster: the calls' keys may live in different slots, hence nodes. valkey-py's ClusterPipeline
        would send one pipeline per node concurrently, but a node that fails makes the whole execute()
        raise (after retrying with pauses and a topology refresh), losing the answers the other nodes
        already gave: a failed cache lookup would also cost the rate-limit decision. So on a cluster
        the calls run concurrently and independently (one round trip per call, all at once), and a
        call that fails fails alone.
        """
        if not calls:
            return []
        if self.is_cluster:
            return list(await asyncio.gather(*(self._settled(call, timeout) for call in calls)))
        if len(calls) == 1:
            return [await self._settled(calls[0], timeout)]
        order = sorted({name for name, _, _ in calls})
        ref = fused(order)  # its scripts in `order` (kept, not split out of the ref again)
        layout: list[str] = []
        keys: list[str] = []
        args: list[Any] = []
        for name, call_keys, call_args in calls:
            layout += (str(order.index(name) + 1), str(len(call_keys)), str(len(call_args)))
            keys += call_keys
            args += call_args
        answers = await self.run(
            ref, keys, [",".join(layout), *args], timeout, retry=all(n in _RETRY_SAFE for n in order)
        )
        return [
            answers[i + 1]
            if answers[i] == 1
            else BackendUnavailable(f"valkey: script error: {_text(answers[i + 1])}")
            for i in range(0, len(answers), 2)
        ]

    async def _settled(self, call: ScriptCall, timeout: float | None) -> Any:
        """run() whose failure is returned, not raised."""
        try:
            return await self.run(*call, timeout)
        except BackendUnavailable as exc:
            return exc

    async def call(self, awaitable: Awaitable[T], timeout: float | None = None, *, raw: bool = False) -> T:
        """Await a backend call with a bound; any failure becomes BackendUnavailable (with `raw`, only
        the time-out does and a client error is raised as it is, for the retry to judge)."""
        gate = self._shared.gate
        if gate is None:
            return await self._bounded(awaitable, timeout, raw)
        try:  # cluster: wait (bounded) for one of the max_connections slots
            async with asyncio.timeout(self.pooling.pool_timeout):
                await gate.acquire()
        except TimeoutError as exc:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise BackendUnavailable(
                f"valkey: no connection free within pool_timeout ({self.pooling.pool_timeout}s)"
            ) from exc
        try:
            return await self._bounded(awaitable, timeout, raw)
        finally:
            gate.release()

    async def _bounded(self, awaitable: Awaitable[T], timeout: float | None, raw: bool) -> T:
        try:
            async with asyncio.timeout(timeout or self.timeout):  # no extra task, unlike wait_for
                return await awaitable
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            raise BackendUnavailable(f"valkey: no answer within {timeout or self.timeout}s") from exc
        except Exception as exc:
            if raw:
                raise
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
            shared.gate = None
            pipeline, shared.pipeline = shared.pipeline, None
            if pipeline is not None:
                await pipeline.close()
            shared.scripts.clear()
            with contextlib.suppress(Exception):  # closing a dead connection must not fail shutdown
                await client.aclose()
