"""WebSockets: security and rate limit before accept (denial response or close 1008); CORS: preflights
are the CORS middleware's, and the guard's rejections carry CORS headers in either order."""

from __future__ import annotations

from typing import Any

import pytest
from bindkit import JWT, bearer, client, settings, token
from fastapi import FastAPI, WebSocket
from guardkit import UNCROSSED_WINDOW
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from asgi_guard import JobConfig, RouteRegistry, guard, install

LIMITED = {
    **JWT,
    "endpoint_name": "ws_private",
    "rate_limit": {
        "enabled": True,
        "algo": "fixed_window",
        "fixed_window": {"limit": 2, "window": UNCROSSED_WINDOW},
    },
}


async def private(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("private answer")
    await websocket.close()


def starlette_ws(**extra: Any) -> Starlette:
    app = Starlette(routes=[WebSocketRoute("/ws", private)])
    registry = RouteRegistry()
    registry.register("/ws", JobConfig(**LIMITED))
    install(app, registry, settings(**extra))
    return app


def fastapi_ws(**extra: Any) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    @guard(JobConfig(**LIMITED))
    async def ws(websocket: WebSocket) -> None:
        await private(websocket)

    install(app, None, settings(**extra))
    return app


@pytest.fixture(params=["starlette", "fastapi"])
def ws_app(request: pytest.FixtureRequest) -> Any:
    return starlette_ws if request.param == "starlette" else fastapi_ws


def rejections(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "asgi_guard_rejections_total", {"route": "ws_private", "stage": "security", "reason": reason}
        )
        or 0.0
    )


def test_websocket_refused_without_token_accepted_with_one_then_limited(ws_app: Any) -> None:
    before = rejections("missing_token")
    with TestClient(ws_app()) as tc:
        for _ in range(3):
            with pytest.raises(WebSocketDenialResponse) as denied, tc.websocket_connect("/ws"):
                pass
            assert denied.value.status_code == 401
            assert denied.value.headers["content-type"] == "application/problem+json"
            assert "x-request-id" in denied.value.headers
        assert rejections("missing_token") == before + 3
        for _ in range(2):
            with tc.websocket_connect("/ws", headers=bearer()) as ws:
                assert ws.receive_text() == "private answer"
        with pytest.raises(WebSocketDenialResponse) as limited, tc.websocket_connect("/ws", headers=bearer()):
            pass
        assert limited.value.status_code == 429 and "retry-after" in limited.value.headers


def test_websocket_deny_mode_and_close_1008_without_the_extension() -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", private), WebSocketRoute("/other", private)])
    registry = RouteRegistry()
    registry.register("/ws", JobConfig(**JWT))
    install(app, registry, settings(unregistered="deny"))

    async def no_extension(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {}
        await app(scope, receive, send)

    with TestClient(no_extension) as tc:
        for path in ("/ws", "/other"):
            with pytest.raises(WebSocketDisconnect) as closed, tc.websocket_connect(path):
                pass
            assert closed.value.code == 1008


@pytest.mark.parametrize("source", ["subprotocol", "query"])
def test_websocket_token_from_subprotocol_or_query_when_configured(source: str) -> None:
    app = starlette_ws(websocket_token=["header", source])
    with TestClient(app) as tc:
        if source == "subprotocol":
            connect = tc.websocket_connect("/ws", subprotocols=[f"bearer.{token()}"])
        else:
            connect = tc.websocket_connect(f"/ws?access_token={token()}")
        with connect as ws:
            assert ws.receive_text() == "private answer"
    with TestClient(starlette_ws()) as tc:  # not configured: not accepted
        with pytest.raises(WebSocketDenialResponse), tc.websocket_connect(f"/ws?access_token={token()}"):
            pass


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def cors_app(order: str) -> Starlette:
    app = Starlette(routes=[Route("/api", whoami, methods=["GET", "POST", "OPTIONS", "DELETE"])])
    registry = RouteRegistry()
    registry.register("/api", JobConfig(**JWT))  # every method, OPTIONS included
    cors = {
        "allow_origins": ["https://app.example"],
        "allow_methods": ["*"],
        "allow_headers": ["authorization"],
        "expose_headers": ["X-Request-ID", "RateLimit", "Retry-After", "WWW-Authenticate"],
    }
    if order == "cors-outside":  # the documented order: install() first, CORS added after (outermost)
        install(app, registry, settings())
        app.add_middleware(CORSMiddleware, **cors)
    else:
        app.add_middleware(CORSMiddleware, **cors)
        install(app, registry, settings())
    return app


@pytest.mark.parametrize("order", ["cors-outside", "cors-inside"])
async def test_cors_preflight_and_headers_on_guard_rejections(order: str) -> None:
    async with client(cors_app(order)) as c:
        preflight = await c.options(
            "/api",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        rejected = await c.delete("/api", headers={"Origin": "https://app.example"})
        assert rejected.status_code == 401
        assert rejected.headers["access-control-allow-origin"] == "https://app.example"
        assert "WWW-Authenticate" in rejected.headers["access-control-expose-headers"]
        ok = await c.delete("/api", headers={"Origin": "https://app.example", **bearer()})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"


def test_websocket_in_an_included_router_with_a_router_default() -> None:
    from fastapi import APIRouter

    from asgi_guard import guard_router

    app = FastAPI()
    router = guard_router(APIRouter(prefix="/live"), JobConfig(**JWT))

    @router.websocket("/feed")
    async def feed(websocket: WebSocket) -> None:
        await private(websocket)

    app.include_router(router, prefix="/v1")
    install(app, None, settings())
    with TestClient(app) as tc:
        with pytest.raises(WebSocketDenialResponse) as denied, tc.websocket_connect("/v1/live/feed"):
            pass
        assert denied.value.status_code == 401
        with tc.websocket_connect("/v1/live/feed", headers=bearer()) as ws:
            assert ws.receive_text() == "private answer"
