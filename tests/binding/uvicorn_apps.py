"""Apps the real-uvicorn tests serve (`python -m uvicorn uvicorn_apps:NAME`)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install


async def job(request: Request) -> JSONResponse:
    return JSONResponse({"private": request.path_params["rid"]})


def _settings() -> GuardSettings:
    return GuardSettings(_env_file=None, jwt_secret="uvicorn-tests-secret-uvicorn-tests-secret")  # type: ignore[call-arg]


async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("private feed")
    await websocket.close()


def _guarded(template: str) -> Starlette:
    app = Starlette(routes=[Route("/jobs/{rid}", job), WebSocketRoute("/feed", feed)])
    registry = RouteRegistry()
    registry.register(
        template, JobConfig(security={"auth_type_required": "jwt"}), methods=["GET"], name="job_status"
    )
    registry.register("/feed", JobConfig(security={"auth_type_required": "jwt"}), name="feed")
    install(app, registry, _settings())
    return app


if os.environ.get("BIND_APP") == "typo":
    app = _guarded("/job/{rid}")  # matches no app route: the server must not start
elif os.environ.get("BIND_APP") == "middleware":
    app = Starlette(routes=[Route("/jobs/{rid}", job)])
    from asgi_guard import GuardMiddleware

    registry = RouteRegistry()
    registry.register(
        "/jobs/{rid}", JobConfig(security={"auth_type_required": "jwt"}), methods=["POST"], name="job_post"
    )
    app.add_middleware(GuardMiddleware, registry=registry, settings=_settings())
else:
    app = _guarded("/jobs/{rid}")
