"""When a handler may run again, and holding a failed attempt's response back until that is known."""

from __future__ import annotations

from starlette.types import Message, Scope, Send

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_IDEMPOTENCY_KEY = b"idempotency-key"


def is_retry_safe(scope: Scope) -> bool:
    """Idempotent methods, or a request carrying an Idempotency-Key; never a plain POST or PATCH."""
    if scope["method"] in IDEMPOTENT_METHODS:
        return True
    return any(name == _IDEMPOTENCY_KEY for name, _ in scope["headers"])


def backoff_delay(backoff: float, retry: int) -> float:
    """Seconds before retry number `retry` (1-based): backoff, 2*backoff, 4*backoff, ..."""
    return float(backoff * (2 ** (retry - 1)))


class Attempt:
    """The `send` one attempt of the handler sees.

    It records the status. With `hold`, a 5xx response (start and body) is kept back, so that the
    attempt can still be retried without the client having seen anything; any other response passes
    straight through, as does everything when `hold` is off.
    """

    __slots__ = ("_send", "complete", "held", "hold", "sent", "status")

    def __init__(self, send: Send, hold: bool) -> None:
        self._send = send
        self.hold = hold
        self.status: int | None = None
        self.held: list[Message] = []
        self.sent = False
        self.complete = False  # the final body was sent (or held)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.hold and self.status < 500:
                self.hold = False
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        if self.hold:
            self.held.append(message)
            return
        self.sent = True
        await self._send(message)

    async def flush(self) -> None:
        """Send what was held (the attempt turned out to be the last)."""
        held, self.held, self.hold = self.held, [], False
        for message in held:
            self.sent = True
            await self._send(message)
