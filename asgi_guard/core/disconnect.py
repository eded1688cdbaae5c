"""Seeing a client go away while the handler runs, not only when the app happens to call `receive()`.

A handler that never reads `receive()` after its body (most do not) would otherwise never learn of an
`http.disconnect`: the server delivers it only to a `receive()` call. `ClientWatch` reads the client's
messages ahead of the app in a small task and hands them to the app unchanged, but only once the
request body is behind it: a request without a body is watched from the start; one with a body is
passed through untouched until the app has read the final body message, and watched from then on.
Reading the body ahead of the app would take it before inner stages are done with it (the encryption
stage swaps in ciphertext; a body over the size limit must reach the stage that answers 413), so
the watch never does. A handler that never reads a body it was sent is watched only from the moment
it has (the server reports a disconnect to the next `receive()` anyway).

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

from starlette.types import Message, Receive, Scope

_DISCONNECT: Message = {"type": "http.disconnect"}


async def _closed() -> Message:
    return _DISCONNECT


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or Transfer-Encoding)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


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

    def __init__(self, receive: Receive, *, has_body: bool = False) -> None:
        self._receive = receive
        self._messages: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()
        self._error: BaseException | None = None
        self.complete = False  # the final body was handed to the server
        self.gone = False
        self.on_gone: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        if not has_body:
            self._start()

    def _start(self, body_done: bool = False) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump(body_done))

    async def _pump(self, body_done: bool) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.request":
                    if body_done:  # not ASGI (the body is over): a server answering at once
                        return  # forever would spin here and fill memory; stop watching
                    body_done = not message.get("more_body", False)
                self._messages.append(message)
                self._ready.set()
                if message["type"] == "http.disconnect":
                    self._disconnected()
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
        if self._task is None and not self._messages:  # the body is the app's to read: pass it on
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._disconnected()
                self._messages.append(message)  # kept: every later receive() answers it again
            elif not message.get("more_body", False):
                self._start(body_done=True)  # the body is complete: watch for the client leaving
            return message
        while not self._messages:
            if self._error is not None:
                raise self._error
            if self._task is None or self._task.done():
                return _DISCONNECT
            self._ready.clear()
            await self._ready.wait()
        message = self._messages[0]
        if message["type"] != "http.disconnect":
            self._messages.popleft()
            self._taken.set()
        return message

    def _disconnected(self) -> None:
        if not self.complete:
            self.gone = True
            if self.on_gone is not None:
                self.on_gone()

    def finish(self, *, failed: bool = False) -> None:
        """Call just before handing the final body to the server (a disconnect seen from then on is
        the server closing the exchange), and again with `failed` when that send raised."""
        if failed:
            self.gone = True
        self.complete = True

    def close(self) -> None:
        """Stop reading (the request is over). The watch lets go of its task: a cancelled task keeps
        its CancelledError, whose traceback holds the task's frames, which hold this watch; a watch
        that kept the task too would make every request a reference cycle (see GuardContext.finish)."""
        task, self._task = self._task, None
        self._receive = _closed
        if task is not None and not task.done():
            task.cancel()
