"""Attacks on logging: a request body that makes the redaction filter fail hides the request's own
access/error record (and turns a served request into an application exception)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from guardkit import http_scope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install

DEEP = b"[" * 100_000


async def handler(request: Request) -> PlainTextResponse:
    if request.query_params.get("fail"):
        raise RuntimeError("handler bug")
    return PlainTextResponse("ok")


def app() -> Starlette:
    registry = RouteRegistry()  # idempotency buffers the body, so the filter sees it
    registry.register("/x", JobConfig(endpoint_name="x", idempotency={"enabled": True}), methods=["POST"])
    application = Starlette(routes=[Route("/x", handler, methods=["POST"])])
    install(application, registry, GuardSettings(_env_file=None))  # type: ignore[call-arg]
    return application


async def post(application: Any, body: bytes, query: bytes) -> tuple[int | None, BaseException | None]:
    scope = http_scope("POST", "/x", [(b"idempotency-key", b"k-" + query)], query=query)
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    raised: BaseException | None = None
    try:
        await application(scope, receive, send)
    except Exception as exc:  # the server logs it
        raised = exc
    return (statuses[0] if statuses else None), raised


@pytest.mark.parametrize("fail", [False, True])
async def test_deeply_nested_body_cannot_suppress_its_access_record(
    fail: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asgi_guard.access")
    status, raised = await post(app(), DEEP, b"fail=1" if fail else b"ok=1")
    assert status == (500 if fail else 200)
    assert (type(raised) is RuntimeError) if fail else raised is None, repr(raised)
    records = [r for r in caplog.records if r.name == "asgi_guard.access"]
    assert len(records) == 1, "the request's own access record must be logged"


def test_redaction_of_a_deeply_nested_message_does_not_raise() -> None:
    from asgi_guard.core.redaction import Redactor

    assert Redactor().text("[" * 100_000).startswith("[")
