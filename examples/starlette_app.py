"""A plain Starlette app whose policies come from examples/routes.toml.

Run: uvicorn examples.starlette_app:app --host 127.0.0.1 --port 8001
(set ASGI_GUARD_JWT_SECRET first: the io_job and job_status routes require a JWT)
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, RouteRegistry, get_guard, install


async def io_job(request: Request) -> JSONResponse:
    payload = await request.json()
    return JSONResponse(
        {"status": "accepted", "resource_id": request.path_params["resource_id"], "data": payload}
    )


async def job_status(request: Request) -> JSONResponse:
    guard = get_guard(request)
    subject = guard.principal.subject if guard and guard.principal else None
    return JSONResponse({"resource_id": request.path_params["resource_id"], "viewer": subject})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


registry = RouteRegistry.from_file(Path(__file__).with_name("routes.toml"))
app = Starlette(
    routes=[
        Route("/jobs/{resource_id}", io_job, methods=["POST"]),
        Route("/jobs/{resource_id}", job_status, methods=["GET"]),
        Route("/health", health),
    ]
)
install(app, registry, GuardSettings())
