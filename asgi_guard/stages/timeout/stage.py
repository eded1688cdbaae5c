"""Innermost: the one place `handler_timeout` is enforced, for every route that sets it.

The time-out covers the handler until its response is complete: its `http.response.body` with
`more_body=False` handed on (what the outer stages then do with that message, e.g. idempotency
storing the response, is bounded by the backend's time-outs, not by this one). Work after that (a
Starlette `BackgroundTask`) is never cancelled: by then the client has its answer, credits are
settled and the breaker has its outcome.

No response started in time: the handler is cancelled and a 504 `handler-timeout` problem is raised (the
outer stages refund credits and count a breaker failure). If the app was then waiting for the client's
next body chunk, the client is the slow one: a 408 `request-timeout` (RFC 9110 §15.5.9), a 4xx the
breaker does not count, so a client trickling its body cannot open the circuit for everyone. A response
started but not finished in time: the handler is cancelled and the same problem is raised; stage 0
cannot answer any more, so the server closes the connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_guard.core.problems import handler_timeout, request_timeout
from asgi_guard.core.stage import RouteInfo, Stage

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime


class HandlerTimeoutMiddleware(Stage["float | None"]):
    """Its section is `JobConfig.handler_timeout` itself (seconds, or None: no stage)."""

    name = "handler_timeout"
    section = "handler_timeout"

    def __init__(self, app: ASGIApp, route: RouteInfo[float | None], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        self.timeout = float(self.config or 0)

    @classmethod
    def enabled_for(cls, config: float | None) -> bool:
        return config is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        complete = False
        waiting = False  # the app is blocked on the client's next body chunk
        body_done = scope["type"] != "http"

        async def timed_receive() -> Message:
            nonlocal waiting, body_done
            waiting = not body_done
            message = await receive()  # cancelled by the deadline: `waiting` stays True
            waiting = False
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        try:
            async with asyncio.timeout(self.timeout) as deadline:

                async def timed_send(message: Message) -> None:
                    nonlocal complete
                    if message["type"] == "http.response.body" and not message.get("more_body", False):
                        # The handler's answer is whole once its final body is handed on: what the
                        # outer stages then do with it (idempotency storing it, on a slow backend)
                        # is not the handler's time, and must not turn a 200 into a refund.
                        complete = True
                        deadline.reschedule(None)
                    await send(message)

                await self.app(scope, timed_receive, timed_send)
        except TimeoutError:
            if complete or not deadline.expired():
                raise
            if waiting:  # a client trickling its body is not a failing handler (nor the breaker's)
                raise request_timeout(self.timeout) from None
            raise handler_timeout(self.timeout) from None
