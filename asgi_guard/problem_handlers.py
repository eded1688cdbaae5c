"""Opt-in RFC 9457 problem+json for the app's own errors, so a client sees one error format.

The guard's rejections are problem+json already; `add_problem_handlers(app)` (or
`install(..., problem_details=True)`) makes the app's errors match:

- `HTTPException` (Starlette's and FastAPI's, which subclasses it), including the router's own 404
  for an unknown path and 405 for a wrong method (with its `Allow` header);
- FastAPI's `RequestValidationError`: 422 with the validation errors in an `errors` member;
- any other exception: 500 `Internal Server Error` with a generic detail (nothing of the exception
  reaches the client; Starlette still logs it and re-raises it to the server).

Body (RFC 9457 section 3): `type` "about:blank" (RFC 9457 section 4.2.1: the status code says it all), `title`
the status phrase, `status`, `detail` (the exception's string detail, else the phrase), and
`request_id` on guarded routes. Headers an `HTTPException` carries are kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from asgi_guard.core.context import SCOPE_KEY
from asgi_guard.core.problems import CONTENT_TYPE

_HIDDEN = frozenset({"content-length", "content-type"})


def problem_response(
    request: Request,
    status: int,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A problem+json response for `status`; a non-string `detail` moves to an `errors` member."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": phrase, "status": status}
    if isinstance(detail, str) and detail:
        body["detail"] = detail
    else:
        body["detail"] = phrase
        if detail not in (None, "", phrase):
            body["errors"] = detail
    ctx = request.scope.get(SCOPE_KEY)
    request_id = getattr(ctx, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    kept = {k: v for k, v in (headers or {}).items() if k.lower() not in _HIDDEN}
    if status >= 500:
        kept.setdefault("cache-control", "no-store")
    payload = json.dumps(body, separators=(",", ":"), default=str).encode()
    return Response(payload, status_code=status, headers=kept, media_type=CONTENT_TYPE.decode())


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem_response(request, exc.status_code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if hasattr(exc, "errors") else str(exc)
    return problem_response(
        request, 422, "the request does not match the endpoint's schema", extra={"errors": errors}
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    return problem_response(request, 500, "the server could not complete the request")


def add_problem_handlers(app: Any, *, unhandled: bool = True) -> None:
    """Register the handlers on a Starlette or FastAPI `app` (before it starts serving).

    `unhandled=False` leaves other exceptions to the app's own 500 handling.
    """
    app.add_exception_handler(HTTPException, _http_exception)
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # plain Starlette: nothing to validate
        pass
    else:
        app.add_exception_handler(RequestValidationError, _validation_error)
    if unhandled:
        app.add_exception_handler(Exception, _unhandled)
