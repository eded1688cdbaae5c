"""Attacks on WebSocket handshakes: garbage in the places a browser may put a token."""

from __future__ import annotations

from typing import Any

import pytest
from binding.bindkit import JWT, settings, token
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from asgi_guard import JobConfig, RouteRegistry, install


async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("secret")
    await websocket.close()


async def handshake(app: Any, query: bytes = b"", subprotocols: list[str] | None = None) -> list[Any]:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/feed",
        "raw_path": b"/feed",
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"api")],
        "client": ("127.0.0.1", 4000),
        "server": ("api", 80),
        "subprotocols": subprotocols or [],
    }
    pending = [{"type": "websocket.connect"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], message.get("code")))

    await app(scope, receive, send)  # an exception here is the server's 500 / dropped handshake
    return sent


def app() -> Starlette:
    registry = RouteRegistry()
    registry.register("/feed", JobConfig(**JWT))
    application = Starlette(routes=[WebSocketRoute("/feed", feed)])
    install(application, registry, settings(websocket_token=["header", "subprotocol", "query"]))
    return application


@pytest.mark.parametrize(
    "query", [b"access_token=%E2%82%AC", b"access_token=%FF", b"access_token=%F0%9F%92%A9"]
)
async def test_non_latin1_access_token_query_is_refused_not_a_crash(query: bytes) -> None:
    assert await handshake(app(), query) == [("websocket.close", 1008)]


@pytest.mark.parametrize("proto", ["bearer.\ud800", "bearer.€", "bearer."])
async def test_garbage_bearer_subprotocol_is_refused(proto: str) -> None:
    assert await handshake(app(), subprotocols=[proto]) == [("websocket.close", 1008)]


async def test_a_valid_query_token_still_connects() -> None:
    sent = await handshake(app(), b"access_token=" + token().encode())
    assert sent[0] == ("websocket.accept", None)


@pytest.mark.parametrize("path", ["/x/../feed", "/feed\n", "/./feed"])
async def test_fallback_websocket_with_odd_targets_is_refused(path: str) -> None:
    """A bare ASGI app that normalises its path would accept these as `/feed`: refuse them like HTTP."""
    import posixpath

    from asgi_guard import GuardMiddleware

    accepted: list[str] = []

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and posixpath.normpath(scope["path"].strip()) == "/feed":
            await receive()
            accepted.append(scope["path"])
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})

    registry = RouteRegistry()
    registry.register("/feed", JobConfig(**JWT))
    guarded = GuardMiddleware(bare, registry=registry, settings=settings())
    scope_path = path
    sent = await handshake_at(guarded, scope_path)
    assert accepted == [] and sent[0] == ("websocket.close", 1008)


async def handshake_at(app: Any, path: str) -> list[Any]:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api")],
        "client": ("127.0.0.1", 4000),
        "server": ("api", 80),
        "subprotocols": [],
    }
    pending = [{"type": "websocket.connect"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], message.get("code")))

    await app(scope, receive, send)
    return sent
