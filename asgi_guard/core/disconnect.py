"""Seeing a client go away while the handler runs, not only when the app happens to call `receive()`.

A handler that never reads `receive()` after its body (most do not) would otherwise never learn of an
`http.disconnect`: the server delivers it only to a `receive()` call. `ClientWatch` reads the client's
messages one step ahead of the app in a small task and hands them to the app unchanged, so at most one
unread body chunk is held (memory stays bounded by the server's chunk size).

When is a client "gone before the response completed"? When `http.disconnect` arrives before the
final `http.response.body` (`more_body=False`) is handed to the server, or when that `send` raises
(ASGI 2.4 servers raise `OSError` on a closed connection). From the moment the final body is handed
over, a disconnect is the end of a completed exchange: servers such as uvicorn answer every
`receive()` with `http.disconnect` once the response is complete.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from starlette.types import Message, Receive

_DISCONNECT: Message = {"type": "http.disconnect"}


class ClientWatch:
    """Reads `receive` one message ahead of the app; `gone` is True once the client disconnected
    before the response completed. `on_gone` (if set) is called once, at that moment."""

    __slots__ = (
        "_error",
        "_messages",
        "_ready",
        "_receive",
        "_taken",
        "_task",
        "complete",
        "gone",
        "on_gone",
    )

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._messages: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()
        self._error: BaseException | None = None
        self.complete = False  # the final body was handed to the server
        self.gone = False
        self.on_gone: Callable[[], None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                message = await self._receive()
                self._messages.append(message)
                self._ready.set()
                if message["type"] == "http.disconnect":
                    if not self.complete:
                        self.gone = True
                        if self.on_gone is not None:
                            self.on_gone()
                    return
                if message.get("more_body", False):  # hold at most one unread chunk
                    self._taken.clear()
                    while self._messages:
                        await self._taken.wait()
                        self._taken.clear()
        except Exception as exc:  # noqa: BLE001 - handed to the app's next receive()
            self._error = exc
            self._ready.set()

    async def receive(self) -> Message:
        """The next client message, in order; after a disconnect, `http.disconnect` again."""
        while not self._messages:
            if self._error is not None:
                raise self._error
            if self._task.done():
                return _DISCONNECT
            self._ready.clear()
            await self._ready.wait()
        message = self._messages[0]
        if message["type"] != "http.disconnect":
            self._messages.popleft()
            self._taken.set()
        return message

    def finish(self, *, failed: bool = False) -> None:
        """Call just before handing the final body to the server (a disconnect seen from then on is
        the server closing the exchange), and again with `failed` when that send raised."""
        if failed:
            self.gone = True
        self.complete = True

    def close(self) -> None:
        """Stop reading (the request is over)."""
        if not self._task.done():
            self._task.cancel()
