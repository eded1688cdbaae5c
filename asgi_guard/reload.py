"""Reload routes.toml without a restart: on a file change, on SIGHUP, or by an opt-in admin endpoint.

```python
install(app, RouteRegistry.from_file("routes.toml"), settings)
install_reload(app, "routes.toml", admin_token=os.environ.get("ROUTES_ADMIN_TOKEN"))  # after install()
```

Each reload is validated first (TOML, every route's JobConfig, and every pipeline built: a JWT route
without a key fails here), then swapped in at once; on any error the running config stays and one
log line says why (`asgi_guard.reload`, ERROR, "routes reload from ... rejected"). A request keeps the
pipeline and config it started with to its end. The state lives in the backend under keys named by
route and policy, not by the numbers, so counters carry over when a limit changes, and a shrunk
limit applies from the next decision. Every process watches the file itself (watchfiles when
installed, `pip install asgi-guard[reload]`, else a 0.25 s stat poll), so all workers of a
deployment pick a change up within about a second of each other; SIGHUP and the admin endpoint
reload the process that gets them.

The admin endpoint (only with `admin_token`): `POST <admin_path>` with `Authorization: Bearer TOKEN`
re-reads the file: 200 `{"reloaded": true, "routes": N}`, 422 problem+json naming the error (the old
config still serving), 401 without the right token, 405 for another method.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.errors import ConfigError
from asgi_guard.core.problems import Problem, method_not_allowed, send_problem
from asgi_guard.registry import RouteRegistry

log = logging.getLogger("asgi_guard.reload")
POLL_INTERVAL = 0.25  # seconds, when watchfiles is not installed
DEBOUNCE_MS = 50


class Swappable(Protocol):
    """What serves the routes: builds every pipeline of a new registry, then swaps it in at once
    (raising, with the old one still in place, when any pipeline cannot be built)."""

    def swap_registry(self, registry: RouteRegistry) -> None: ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    routes: int = 0
    error: str = ""


class RouteReloader:
    """Reloads one routes file into one guard (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        target: Swappable | None = None,
        *,
        watch: bool = True,
        sighup: bool = True,
        load: Callable[[Path], RouteRegistry] = RouteRegistry.from_file,
    ) -> None:
        self.path = Path(path).resolve()
        self._name = str(self.path)
        self.target = target
        self.watch = watch
        self.sighup = sighup
        self._load = load
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._signal = False
        self.reloads = 0  # successful swaps (tests and the admin answer read it)
        self.failures = 0

    async def reload(self, reason: str = "manual") -> ReloadResult:
        """Validate the file and swap it in; on error keep the running config and log why."""
        async with self._lock:  # one reload at a time; a burst of events ends on the latest file
            if self.target is None:
                raise RuntimeError("RouteReloader has no target: install_reload() after install()")
            try:
                registry = await asyncio.to_thread(self._load, self.path)  # file I/O off the loop
                self.target.swap_registry(registry)  # on the loop: the swap is one step
            except Exception as exc:  # noqa: BLE001 - any fault of a new config (hooks too) keeps the old one
                self.failures += 1
                message = _describe(exc)
                log.error(
                    "routes reload from %s rejected (%s); still serving the previous config: %s",
                    self.path,
                    reason,
                    message,
                )
                return ReloadResult(False, error=message)
            self.reloads += 1
            log.warning("routes reloaded from %s (%s): %d routes", self.path, reason, len(registry))
            return ReloadResult(True, routes=len(registry))

    # -- triggers -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching (and listening for SIGHUP) on the running loop; idempotent."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        if self.watch:
            self._task = loop.create_task(self._watch(), name="asgi-guard routes watch")
        if self.sighup and hasattr(signal, "SIGHUP"):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
                self._signal = True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._signal:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal = False

    async def _watch(self) -> None:
        try:
            from watchfiles import awatch
        except ImportError:
            await self._poll()
            return
        # the directory, not the file: editors and deploy tools replace files by renaming
        async for changes in awatch(self.path.parent, debounce=DEBOUNCE_MS, step=25, recursive=False):
            if any(changed == self._name for _, changed in changes):  # absolute, under the resolved dir
                await self.reload("file changed")

    async def _poll(self) -> None:
        last = _signature(self.path)
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            now = _signature(self.path)
            if now != last:
                last = now
                await self.reload("file changed")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " | ")
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ConfigError) else text


class ReloadMiddleware:
    """Outermost: starts the reloader with the app (lifespan, else the first request) and serves the
    opt-in admin endpoint. It finds the guard by following `.app` down the middleware chain."""

    def __init__(
        self,
        app: ASGIApp,
        reloader: RouteReloader,
        admin_token: str | None = None,
        admin_path: str = "/_guard/reload",
    ) -> None:
        self.app = app
        self.reloader = reloader
        self._token = admin_token.encode() if admin_token else None
        self._admin_path = admin_path if admin_token else None
        self._started = False

    def _begin(self) -> None:
        if self._started:
            return
        if self.reloader.target is None:
            self.reloader.target = find_guard(self.app)
        self.reloader.start()
        self._started = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if not self._started:
            self._begin()
        if kind == "http" and scope["path"] == self._admin_path:
            await self._admin(scope, send)
            return
        await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Callable[[], Any]:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._begin()
            elif message["type"] == "lifespan.shutdown":
                await self.reloader.stop()
            return message

        return lifespan_receive

    async def _admin(self, scope: Scope, send: Send) -> None:
        if scope["method"] != "POST":
            await send_problem(send, method_not_allowed(scope["method"], "POST"))
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if self._token is None or not hmac.compare_digest(given, b"Bearer " + self._token):
            problem = Problem(401, "unauthorized", "Unauthorized", "the admin token is required")
            problem.headers.append((b"www-authenticate", b"Bearer"))
            await send_problem(send, problem)
            return
        result = await self.reloader.reload("admin endpoint")
        if not result.ok:
            detail = f"the new routes were rejected; the previous config is still serving: {result.error}"
            await send_problem(send, Problem(422, "routes-rejected", "Unprocessable Content", detail))
            return
        body = json.dumps({"reloaded": True, "routes": result.routes}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def find_guard(app: Any) -> Swappable:
    """The first object down the `.app` chain that can swap its routes (the guard middleware)."""
    seen = 0
    node = app
    while node is not None and seen < 64:
        if callable(getattr(node, "swap_registry", None)):
            return node  # type: ignore[no-any-return]
        node = getattr(node, "app", None)
        seen += 1
    raise ConfigError(
        "install_reload(): no asgi-guard middleware below it; call install_reload after install"
    )


def install_reload(
    app: Any,
    path: str | Path,
    *,
    watch: bool = True,
    sighup: bool = True,
    admin_token: str | None = None,
    admin_path: str = "/_guard/reload",
) -> RouteReloader:
    """Reload `path` into the app's guard at run time (call after `install`); returns the reloader
    (`await reloader.reload()` reloads by hand)."""
    reloader = RouteReloader(path, watch=watch, sighup=sighup)
    app.add_middleware(ReloadMiddleware, reloader=reloader, admin_token=admin_token, admin_path=admin_path)
    return reloader
