"""The app the two-process reload test serves with uvicorn (env: ROUTES, VALKEY_URL, KEY_PREFIX)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, RouteRegistry, install
from asgi_guard.reload import install_reload


async def items(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


app = Starlette(routes=[Route("/items", items)])
settings = GuardSettings(  # type: ignore[call-arg]
    _env_file=None, valkey_url=os.environ["VALKEY_URL"], key_prefix=os.environ["KEY_PREFIX"]
)
install(app, RouteRegistry.from_file(os.environ["ROUTES"]), settings)
install_reload(app, os.environ["ROUTES"])
