"""Automatic pipelining of script calls (Valkey standalone and Sentinel), as ioredis's
`enableAutoPipelining` does: a script called while another call is in flight is queued, and every
call queued in one event-loop turn goes out in one pipeline (one write, one connection taken from
the pool, the answers read back in order).

Why: under load the guard's cost on Valkey is the client's per-call work (pool, packing, a socket
write and a read per call), not the server's; 50 concurrent EVALSHAs through valkey-py ran 2.3-2.5x
more calls per second pipelined this way (`benchmarks/clients_bench.py`). A call made while
nothing is in flight goes out alone at once, so a quiet process adds no wait and no task.

Each caller keeps its own bound and errors: a caller's time-out cancels its own future only (a
pipeline already sent runs on the server, as a lone call timed out would), a script error answers
that call alone, a lost connection fails every call of that pipeline (each caller's retry policy
then decides, as for a lone call). A call whose script the server does not know (NOSCRIPT: first
use, a restart, SCRIPT FLUSH) is run again alone, which loads it. Cluster clients do not use this:
their calls go to different nodes (see `ValkeyBackend.run_many`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

MAX_BATCH = 64  # calls per pipeline; more wait for the next turn's


class _Call:
    __slots__ = ("args", "future", "keys", "script")

    def __init__(self, script: Any, keys: Sequence[Any], args: Sequence[Any], future: asyncio.Future[Any]):
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class AutoPipeline:
    """One per client: `send(script, keys, args)` is the call's answer, to await."""

    __slots__ = ("_client", "_encode", "_in_flight", "_queue", "_scheduled", "_tasks", "batches")

    def __init__(self, client: Any) -> None:
        self._client = client
        self._encode = client.get_encoder().encode  # valkey-py's own argument encoding
        self._queue: list[_Call] = []
        self._scheduled = False
        self._in_flight = 0  # calls sent and not yet answered, alone or pipelined
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # pipelines sent (tests and benchmarks read it)

    def send(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """The answer of `script(keys, args)`: sent alone now when nothing is in flight, else
        queued for this turn's pipeline."""
        if not self._in_flight and not self._queue:
            return self._alone(script, keys, args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        try:  # encoded now: a pipeline encodes its calls together, and one bad argument would fail all
            encode = self._encode
            keys, args = [encode(k) for k in keys], [encode(a) for a in args]
        except Exception as exc:  # noqa: BLE001 - the caller's own error, as a lone call would raise it
            future.set_exception(exc)
            return future
        self._queue.append(_Call(script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return future

    async def _alone(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        self._in_flight += 1
        try:
            return await script(keys=keys, args=args)
        finally:
            self._in_flight -= 1

    def _start(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if self._queue:  # the rest next turn
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        batch = [call for call in batch if not call.future.done()]  # callers that gave up
        if not batch:
            return
        self.batches += 1
        self._spawn(self._send(batch))

    async def _send(self, batch: list[_Call]) -> None:
        from valkey.exceptions import NoScriptError

        self._in_flight += len(batch)
        try:
            pipe = self._client.pipeline(transaction=False)
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            answers = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection (or the task) failed: every call did
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._in_flight -= len(batch)
        if len(answers) != len(batch):  # never seen; an answer per call or none is trusted
            _fail(batch, RuntimeError(f"valkey pipeline: {len(answers)} answers for {len(batch)} calls"))
            return
        for call, answer in zip(batch, answers, strict=True):
            if call.future.done():
                continue
            if isinstance(answer, NoScriptError):  # run alone: loads the script, then runs it
                self._rerun(call)
            elif isinstance(answer, Exception):
                call.future.set_exception(answer)
            else:
                call.future.set_result(answer)

    def _rerun(self, call: _Call) -> None:
        async def again() -> None:
            if call.future.done():  # the caller gave up meanwhile: a lone call would not have run
                return
            try:
                answer = await self._alone(call.script, call.keys, call.args)
            except BaseException as exc:
                _fail([call], exc)
                if not isinstance(exc, Exception):
                    raise
                return
            if not call.future.done():
                call.future.set_result(answer)

        self._spawn(again())

    def _spawn(self, work: Any) -> None:
        """Run `work` as a task kept referenced until done (cancelled by `close`)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """The client is closing: calls still queued fail (ConnectionError), pipelines in flight are
        cancelled (their callers see the cancellation), so no connection is left taken."""
        from valkey.exceptions import ConnectionError as ValkeyConnectionError

        queued, self._queue = self._queue, []
        _fail(queued, ValkeyConnectionError("the Valkey client was closed"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _fail(calls: list[_Call], error: BaseException) -> None:
    """Answer every call still waiting with `error` (a cancellation cancels them)."""
    for call in calls:
        if not call.future.done():
            if isinstance(error, asyncio.CancelledError):
                call.future.cancel()
            else:
                call.future.set_exception(error)
