"""The app of the disconnect test (run by uvicorn --workers 2): a priced 600 ms handler on Valkey."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install


async def slow(request: Request) -> Response:
    await asyncio.sleep(0.6)
    return JSONResponse({"ok": True})


registry = RouteRegistry()
registry.register("/slow", JobConfig(endpoint_name="slow", required_credits=1), methods=["GET"])
app = Starlette(routes=[Route("/slow", slow, methods=["GET"])])
install(
    app,
    registry,
    GuardSettings(
        valkey_url=os.environ["HARDEN_VALKEY"],
        key_prefix=os.environ["HARDEN_PREFIX"],
        _env_file=None,  # type: ignore[call-arg]
    ),
)
