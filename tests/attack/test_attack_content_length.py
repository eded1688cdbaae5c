"""Attack 2: the Content-Length 413 precheck (`core.context.declared_length`) with garbage values."""

from __future__ import annotations

from typing import Any

import pytest
from binding.bindkit import settings
from guardkit import drive, http_scope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.state.memory import MemoryBackend


def _app() -> Starlette:
    async def job(request: Request) -> JSONResponse:
        return JSONResponse({"got": len(await request.body())})

    registry = RouteRegistry()
    # idempotency needs the body: the precheck runs on this route
    registry.register("/job", JobConfig(endpoint_name="job", idempotency={"enabled": True}), methods=["POST"])
    app = Starlette(routes=[Route("/job", job, methods=["POST"])])
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), MemoryBackend()))
    return app


async def _post(app: Any, headers: list[tuple[bytes, bytes]], body: bytes = b"{}") -> tuple[int, bytes]:
    scope = http_scope("POST", "/job", [(b"content-type", b"application/json"), *headers])
    sent, error = await drive(app, scope, body)
    if error is not None:
        return -1, repr(error).encode()
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    "value",
    [b"9" * 4301, b"0" * 5000 + b"2", b"1" * 20000],
    ids=["4301-digits", "5001-digits-leading-zeros", "20000-digits"],
)
async def test_content_length_with_more_digits_than_int_accepts_is_a_4xx(value: bytes) -> None:
    """`int(b"9" * 4301)` raises ValueError (Python's integer string conversion limit): the
    precheck turns a client's header into a 500 (a server in front may pass such a header on)."""
    status, body = await _post(_app(), [(b"content-length", value)])
    assert 400 <= status < 500, (status, body[:200])


@pytest.mark.parametrize(
    "values",
    [[b"-1"], [b"+2"], [b" 2"], [b"2, 2"], [b"\xd9\xa2"], [b"2", b"99999999999"], [b"99999999999", b"2"]],
)
async def test_garbage_or_duplicated_content_length_is_never_a_5xx(values: list[bytes]) -> None:
    status, _ = await _post(_app(), [(b"content-length", v) for v in values], b"{}")
    assert 0 < status < 500
