"""RFC 9457 problem+json responses, written straight to the ASGI `send` (no Response object)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import Send

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext

PROBLEM_BASE = "urn:asgi-guard:problem:"
CONTENT_TYPE = b"application/problem+json"


class Problem(Exception):
    """Raised by a stage to reject a request; turned into a problem+json response by the stack."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str = "",
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        extra: dict[str, Any] | None = None,
        stage: str | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.stage = stage  # the stage raising it, when it did not record a decision itself
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or []
        self.extra = extra or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def body(self, request_id: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
        }
        if request_id:
            doc["request_id"] = request_id
        doc.update(self.extra)
        return doc


async def send_problem(send: Send, problem: Problem, request_id: str | None = None) -> None:
    """Answer with `problem`; the stack's outer send wrapper adds X-Request-ID and stage headers."""
    payload = json.dumps(problem.body(request_id), separators=(",", ":")).encode()
    headers = [
        (b"content-type", CONTENT_TYPE),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *problem.headers,
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


STACK = "stack"  # rejected_by for a problem that no stage decided (stage 0: a 413 body, broken JSON)


async def answer_problem(ctx: GuardContext, send: Send, problem: Problem) -> None:
    """The one place a raised Problem becomes the response: it records which stage rejected
    (the stage that decided "rejected", else the problem's own `stage`, else "stack") and sends
    the problem+json body with the request id.

    The problem is answered, so its traceback is dropped: it holds the frames the problem was
    raised through, and those frames often hold the problem (`raise problem` from a helper), a
    reference cycle per rejected request that only the cyclic GC would free."""
    problem.__traceback__ = None
    if ctx.rejected_by is None:
        ctx.rejected_by = problem.stage or STACK
    await send_problem(send, problem, ctx.request_id)


def payload_too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", "Payload Too Large", f"request body exceeds {limit} bytes")


def method_not_allowed(method: str, allow: str) -> Problem:
    """405 with the `Allow` field the endpoint supports (RFC 9110 §15.5.6), e.g. `"GET, HEAD"`."""
    return Problem(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        f"{method} is not allowed here",
        headers=[(b"allow", allow.encode())],
    )


def backend_unavailable(stage: str, retry_after: int = 1) -> Problem:
    return Problem(
        503,
        "backend-unavailable",
        "Service Unavailable",
        f"the {stage} backend is unavailable",
        headers=[(b"retry-after", str(retry_after).encode())],
        extra={"stage": stage},
        stage=stage,
    )


HANDLER_TIMEOUT = "handler-timeout"


def request_timeout(seconds: float) -> Problem:
    """408: the route's `handler_timeout` passed while the app waited for the client's body
    (RFC 9110 §15.5.9); the client's doing, so the breaker does not count it."""
    return Problem(
        408,
        "request-timeout",
        "Request Timeout",
        f"the request body did not arrive within {seconds}s",
        headers=[(b"connection", b"close")],
    )


def handler_timeout(seconds: float) -> Problem:
    """504: the handler gave no complete response within the route's `handler_timeout`.

    Raised by the one time-out wrapper (innermost); the breaker counts it as a failure by this slug."""
    return Problem(504, HANDLER_TIMEOUT, "Gateway Timeout", f"no response within {seconds}s")
