"""The background event sender: requests hand events over and never wait for the broker.

One `EventPublisher` per app (a runtime service). A single task sends queued events with the
asyncio Pulsar client (one lazily created producer per topic), retries a failed send `max_retries`
times with a doubling `retry_delay`, and moves what still fails to the durable outbox. While the
outbox holds anything, new events join it behind the old ones, so order holds; the same task drains
it oldest first once the broker answers. Start-up drains; shutdown flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asgi_guard.core.metrics import GuardMetrics, get_metrics
from asgi_guard.stages.events.outbox import Outbox, OutboxEvent

log = logging.getLogger("asgi_guard.events")
_client_log = logging.getLogger("asgi_guard.events.pulsar")

DRAIN_INTERVAL = 1.0
BATCH = 256
FLUSH_TIMEOUT = 10.0
RECREATE_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    retry_delay: float = 0.2


class BrokerUnreachable(RuntimeError):
    """The producer is not connected, or no broker is configured."""


class EventPublisher:
    """Queue -> Pulsar, or -> outbox when Pulsar does not take it."""

    def __init__(
        self,
        service_url: str | None,
        outbox: Outbox,
        *,
        send_timeout: float = 5.0,
        metrics: GuardMetrics | None = None,
    ) -> None:
        self.service_url = service_url
        self.outbox = outbox
        self.send_timeout = send_timeout
        self._queue: asyncio.Queue[tuple[OutboxEvent, RetryPolicy]] = asyncio.Queue()
        self._client: Any = None
        self._producers: dict[str, Any] = {}
        self._down_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[tuple[OutboxEvent, RetryPolicy]] = []
        self._outbox_pending = True  # unknown until the first drain: assume there is a backlog
        self._metrics = metrics or get_metrics()  # the app's (runtime.metrics), else the global registry's
        self._default_policy = RetryPolicy()

    # -- request side -----------------------------------------------------------------------------
    def submit(self, event: OutboxEvent, policy: RetryPolicy | None = None) -> None:
        """Hand an event over; returns at once (no I/O)."""
        self._queue.put_nowait((event, policy or self._default_policy))

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            if self.service_url and _client_log.level == logging.NOTSET:
                _client_log.setLevel(logging.WARNING)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="asgi-guard-events")

    async def close(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Flush: send (or outbox) everything queued, then close producers and the client."""
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                log.warning("event flush timed out after %.1fs; the rest goes to the outbox", timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        leftovers = self._inflight
        self._inflight = []
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
            self._queue.task_done()
        if leftovers:
            await self._to_outbox([item for item in leftovers])
        for producer in self._producers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.close(), self.send_timeout)
        self._producers.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.close(), self.send_timeout)
            self._client = None
        await self.outbox.close()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until everything submitted so far has been sent or outboxed (tests, shutdown)."""
        await asyncio.wait_for(self._queue.join(), timeout)

    # -- the sender task --------------------------------------------------------------------------
    async def _run(self) -> None:
        await self._refresh_gauges()
        while True:
            if self._outbox_pending and self.service_url:
                try:
                    await self._drain()
                except Exception:  # the task must survive anything
                    log.exception("outbox drain failed")
            try:
                first = await asyncio.wait_for(
                    self._queue.get(), DRAIN_INTERVAL if self._outbox_pending else None
                )
            except TimeoutError:
                await self._refresh_gauges()
                continue
            batch = [first]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = batch
            try:
                if self._outbox_pending or not self.service_url:
                    await self._to_outbox(batch)
                else:
                    await self._send_with_retries(batch)
            except Exception:
                log.exception("event sender failed; keeping the batch in the outbox")
                with contextlib.suppress(Exception):
                    await self._to_outbox(batch)
            # not in `finally`: when close() cancels mid-send, it outboxes what is still in flight
            self._inflight = []
            for _ in batch:
                self._queue.task_done()

    async def _send_with_retries(self, batch: list[tuple[OutboxEvent, RetryPolicy]]) -> None:
        """Retry the failed part with a doubling delay; once any event is out of retries, every
        still-failed event goes to the outbox together, in order."""
        pending = batch
        attempt = 0
        while True:
            results = await self._send_all([event for event, _ in pending])
            failed = [
                (item, error) for item, error in zip(pending, results, strict=True) if error is not None
            ]
            if not failed:
                return
            if any(attempt >= policy.max_retries for (_, policy), _ in failed):
                for (event, _), _ in failed:
                    self._metrics.events.labels(event.topic, "failed").inc()
                log.warning(
                    "%d event(s) moved to the outbox after %d attempt(s): %s",
                    len(failed),
                    attempt + 1,
                    failed[-1][1],
                )
                await self._to_outbox([item for item, _ in failed])
                return
            await asyncio.sleep(max(policy.retry_delay for (_, policy), _ in failed) * (2**attempt))
            attempt += 1
            pending = [item for item, _ in failed]

    async def _send_all(self, events: Sequence[OutboxEvent]) -> list[BaseException | None]:
        """Send concurrently (each producer keeps its own order); one result per event."""
        if not events:
            return []
        # Producers first, one per topic, before any send: sends then start in submission order
        # on one producer per topic, which is what keeps a resource's events in order.
        producers: dict[str, Any] = {}
        for topic in dict.fromkeys(event.topic for event in events):
            try:
                producers[topic] = await self._producer(topic)
            except Exception as exc:  # noqa: BLE001 - every event of this topic fails with it
                producers[topic] = exc
        outcomes = await asyncio.gather(
            *(self._send(e, producers[e.topic]) for e in events), return_exceptions=True
        )
        results: list[BaseException | None] = []
        for event, outcome in zip(events, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                results.append(outcome)
            else:
                self._metrics.events.labels(event.topic, "drained" if event.row_id else "published").inc()
                results.append(None)
        return results

    async def _send(self, event: OutboxEvent, producer: Any) -> None:
        if isinstance(producer, BaseException):
            raise producer
        if not producer.is_connected():
            self._maybe_recreate(event.topic)
            raise BrokerUnreachable(f"producer for {event.topic} is not connected")
        self._down_since.pop(event.topic, None)
        await producer.send(event.payload, properties=event.properties, partition_key=event.partition_key)

    def _maybe_recreate(self, topic: str) -> None:
        """A producer the client gave up on stays disconnected: drop it after a while, so the
        next send creates a fresh one."""
        now = time.monotonic()
        since = self._down_since.setdefault(topic, now)
        if now - since > RECREATE_AFTER:
            self._down_since.pop(topic, None)
            producer = self._producers.pop(topic, None)
            if producer is not None:
                task = asyncio.get_running_loop().create_task(producer.close())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _producer(self, topic: str) -> Any:
        producer = self._producers.get(topic)
        if producer is None:
            if self._client is None:
                if not self.service_url:
                    raise BrokerUnreachable("no pulsar_url configured")
                from pulsar.asyncio import Client

                self._client = Client(
                    self.service_url,
                    operation_timeout_seconds=max(1, int(self.send_timeout)),
                    connection_timeout_ms=max(500, int(self.send_timeout * 1000)),
                    logger=_client_log,
                )
            producer = await self._client.create_producer(
                topic,
                send_timeout_millis=int(self.send_timeout * 1000),
                batching_enabled=True,
                batching_max_publish_delay_ms=2,
                block_if_queue_full=False,
            )
            self._producers[topic] = producer
        return producer

    # -- outbox -----------------------------------------------------------------------------------
    async def _to_outbox(self, items: Sequence[tuple[OutboxEvent, RetryPolicy]]) -> None:
        fresh = [event for event, _ in items if event.row_id is None]
        await self.outbox.append(fresh)
        for event in fresh:
            self._metrics.events.labels(event.topic, "outboxed").inc()
        self._outbox_pending = True
        await self._refresh_gauges()

    async def _drain(self) -> None:
        """Send the outbox oldest first; stop at the first failure (the rest waits for the next pass)."""
        if not await self.outbox.try_lock():
            await self._refresh_gauges()
            return
        try:
            while True:
                rows = await self.outbox.peek(BATCH)
                if not rows:
                    self._outbox_pending = False
                    break
                results = await self._send_all(rows)
                sent = [
                    row.row_id
                    for row, error in zip(rows, results, strict=True)
                    if error is None and row.row_id is not None
                ]
                await self.outbox.delete(sent)
                if len(sent) < len(rows):
                    break
        finally:
            await self.outbox.unlock()
            await self._refresh_gauges()

    async def _refresh_gauges(self) -> None:
        try:
            size, age = await self.outbox.stats()
        except Exception:  # a broken outbox file is logged, never fatal to the sender
            log.exception("cannot read the outbox at %s", self.outbox.path)
            return
        self._metrics.outbox_size.set(size)
        self._metrics.outbox_oldest_age.set(age)
        if size == 0 and not self._inflight:
            self._outbox_pending = False
        elif size:
            self._outbox_pending = True
