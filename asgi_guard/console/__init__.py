"""The operator console (opt-in): `GuardSettings.console_path` serves it from the guard's outer
middleware, or mount `console_app(runtime, registry, token=..., allow=[...])` yourself."""

from __future__ import annotations

from asgi_guard.console.app import ConsoleApp, console_app

__all__ = ["ConsoleApp", "console_app"]
