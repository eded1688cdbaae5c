"""GuardRuntime: the process-wide services every route's pipeline shares (backend, clients, keys)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgi_guard.core.settings import GuardSettings
from asgi_guard.state import Backend, backend_from_settings

T = TypeVar("T")
Hook = Callable[[], Awaitable[None]]
log = logging.getLogger("asgi_guard")


class GuardRuntime:
    """Built once per app. Stages fetch shared services with `service(key, factory)`."""

    def __init__(self, settings: GuardSettings | None = None, backend: Backend | None = None) -> None:
        self.settings = settings or GuardSettings()
        self.backend = backend or backend_from_settings(self.settings)
        self._services: dict[str, Any] = {}
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._started = False
        self._stopped = False
        self._lock: asyncio.Lock | None = None

    def service(self, key: str, factory: Callable[[], T]) -> T:
        """The shared instance for `key`, created on first request by `factory`."""
        found = self._services.get(key)
        if found is None:
            found = self._services[key] = factory()
        return found

    def on_startup(self, hook: Hook) -> None:
        if self._started:
            raise RuntimeError("on_startup() after start-up; register hooks while building pipelines")
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self._shutdown.append(hook)

    @property
    def started(self) -> bool:
        return self._started

    async def startup(self) -> None:
        """Connect the backend and run start-up hooks once (lifespan, or the first request)."""
        if self._started:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._started:
                return
            await self.backend.start()
            for hook in self._startup:
                await hook()
            self._started = True

    async def shutdown(self) -> None:
        """Run shutdown hooks in reverse order, then close the backend; errors are logged."""
        if self._stopped:
            return
        self._stopped = True
        for hook in reversed(self._shutdown):
            try:
                await hook()
            except Exception:
                log.exception("asgi-guard shutdown hook failed")
        await self.backend.close()
