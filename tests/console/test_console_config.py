"""A misconfigured console fails at install (import time), like every config error, never per request.

Found by a newcomer: `ASGI_GUARD_CONSOLE_TOKEN=tooshort` was only raised while Starlette built its
middleware stack on the first (lifespan) call; uvicorn's lifespan=auto took that for "lifespan
unsupported" and served, and every request of the whole app answered 500.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.core.errors import ConfigError
from asgi_guard.state.memory import MemoryBackend


async def ok(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.parametrize("token", ["tooshort", None])
def test_a_console_token_too_short_or_missing_fails_at_install(token: str | None) -> None:
    registry = RouteRegistry()
    registry.register("/x", JobConfig(rate_limit={"enabled": True}))
    settings = GuardSettings(_env_file=None, console_path="/_guard", console_token=token)  # type: ignore[call-arg]
    app = Starlette(routes=[Route("/x", ok)])
    with pytest.raises(ConfigError):
        install(app, registry, runtime=GuardRuntime(settings, MemoryBackend()))
