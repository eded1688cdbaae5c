"""The background event sender: requests hand events over and never wait for the broker.

One `EventPublisher` per app (a runtime service). A single task sends queued events with the
asyncio Pulsar client, retries a failed send `max_retries` times with a doubling `retry_delay`, and
moves what still fails to the durable outbox. While the outbox holds anything of this process, new
events join it behind the old ones, so order holds; the same task drains it oldest first once the
broker answers. Start-up drains; shutdown flushes.

Exactly once on the topic (with broker-side deduplication on, see docs/stages/events.md): every
event gets a *lane* (the outbox's per-process producer name, `asgi-guard-<outbox id>-<lane>`) and
that lane's next sequence id before its first send, and keeps both for every resend, from memory or
from the outbox, across restarts. Pulsar stores a (producer name, sequence id) once and answers a
resend of a stored one with a receipt of message id -1:-1. Because Pulsar also drops any id at or
below the highest it stored for the name, a lane's sends go out in sequence order on one unbatched
producer per topic, and an event that never left this process while a later id of its lane did
(a client-side rejection), or whose id is at or below the broker's highest for the name before its
first send, is renumbered above every id the lane sent: nothing lost beats no duplicates. A send that failed
ambiguously (a time-out; the broker's "cannot tell yet" while the first copy is still being
stored) keeps its id: the broker stores a producer's sends in order, so when a later id landed,
this one did too or is about to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from asgi_guard.core.metrics import GuardMetrics, get_metrics
from asgi_guard.stages.events.outbox import Outbox, OutboxEvent

log = logging.getLogger("asgi_guard.events")
_client_log = logging.getLogger("asgi_guard.events.pulsar")

DRAIN_INTERVAL = 1.0
ORPHAN_CHECK = 10.0  # seconds between looks for rows a gone process left in its lane
# While the broker is away the outbox grows, and counting it reads every row: appends count it at
# most this often (seconds) and add what they appended in between (the size stays exact; the
# oldest row's age is at most that old).
GAUGES_EVERY = 1.0
BATCH = 256
FLUSH_TIMEOUT = 10.0
RECREATE_AFTER = 30.0
SEQ_BLOCK = 1024  # sequence ids reserved (one fsync'd write) at a time; unused ones are skipped


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    retry_delay: float = 0.2


class BrokerUnreachable(RuntimeError):
    """The producer is not connected, or no broker is configured."""


class Renumbered(RuntimeError):
    """The send never left this process while a later id of its lane did: it got a new id and is
    sent again (under its old one the broker would drop it)."""


@dataclass(eq=False)
class Lane:
    """One producer name with its own sequence of ids (and one producer per topic)."""

    number: int
    name: str
    next_seq: int = 0
    limit: int = 0  # ids in [next_seq, limit) are reserved in the outbox for this object
    floor: int = 0  # the broker knows ids below this for the name: never hand them out
    producers: dict[str, Any] = field(default_factory=dict)
    sent_high: dict[str, int] = field(default_factory=dict)  # per topic: the highest id that may have landed
    down_since: dict[str, float] = field(default_factory=dict)


# Client-side rejections: the message was never handed to the broker (anything else, above all a
# time-out, may have landed).
_NEVER_SENT = frozenset(
    {
        "ProducerQueueIsFull",
        "MemoryBufferIsFull",
        "MessageTooBig",
        "InvalidMessage",
        "AlreadyClosed",
        "ProducerNotInitialized",
        "CryptoError",
        "OperationNotSupported",
        "InvalidConfiguration",
    }
)


def _never_sent(error: BaseException) -> bool:
    """A Pulsar error that proves the message never left this process."""
    code = getattr(error, "error", None)
    try:
        return callable(code) and getattr(code(), "name", "") in _NEVER_SENT
    except Exception:  # noqa: BLE001 - an unknown error type: assume it may have been sent
        return False


def _deduplicated(message_id: Any) -> bool:
    """Pulsar's receipt for a send its deduplication dropped carries ledger and entry id -1."""
    try:
        return int(message_id.ledger_id()) < 0 and int(message_id.entry_id()) < 0
    except (AttributeError, TypeError, ValueError):
        return False


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
        self._own: Lane | None = None
        self._lanes: dict[int, Lane] = {}
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[tuple[OutboxEvent, RetryPolicy]] = []
        self._outbox_pending = True  # unknown until the first drain: assume there is a backlog
        self._orphans = True  # rows of lanes no live process may hold: checked on the first pass
        self._checked = 0.0  # when the outbox was last counted (monotonic)
        self._size = 0  # rows in the outbox at that count, plus what was appended since
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
        # in flight when cancelled: they may have reached the broker, so a drop of their resend is a
        # duplicate (they are numbered already; everything queued behind them gets higher ids)
        leftovers = [(replace(event, attempted=True), policy) for event, policy in self._inflight]
        self._inflight = []
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
            self._queue.task_done()
        if leftovers:
            await self._to_outbox(leftovers)
        for lane in list(self._lanes.values()):
            await self._close_lane(lane)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.close(), self.send_timeout)
            self._client = None
        await self.outbox.close()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until everything submitted so far has been sent or outboxed (tests, shutdown)."""
        await asyncio.wait_for(self._queue.join(), timeout)

    # -- lanes and sequence ids -------------------------------------------------------------------
    async def _own_lane(self) -> Lane:
        if self._own is None:
            self._own = await self._open_lane(await self.outbox.lane())
        return self._own

    async def _open_lane(self, number: int) -> Lane:
        lane = self._lanes.get(number)
        if lane is None:
            lane = Lane(number, f"asgi-guard-{await self.outbox.outbox_id()}-{number}")
            self._lanes[number] = lane
        return lane

    async def _close_lane(self, lane: Lane) -> None:
        """Close the lane's producers (before its lock is released: the name is free for the next holder)."""
        for producer in lane.producers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.close(), self.send_timeout)
        lane.producers.clear()
        if lane is not self._own:
            self._lanes.pop(lane.number, None)

    async def _number(self, lane: Lane, events: Sequence[OutboxEvent]) -> list[OutboxEvent]:
        """The lane's next sequence ids, in order, as never sent under them."""
        numbered = []
        for event in events:
            if lane.next_seq >= lane.limit or lane.next_seq < lane.floor:
                size = max(SEQ_BLOCK, len(events))
                lane.next_seq = await self.outbox.reserve(lane.number, size, lane.floor)
                lane.limit = lane.next_seq + size
            numbered.append(replace(event, lane=lane.number, seq=lane.next_seq, attempted=False))
            lane.next_seq += 1
        return numbered

    # -- the sender task --------------------------------------------------------------------------
    async def _run(self) -> None:
        with contextlib.suppress(Exception):  # a broken outbox is logged by the gauges, retried below
            await self._own_lane()
        await self._refresh_gauges()
        while True:
            if self.service_url and (self._outbox_pending or self._orphans):
                try:
                    if self._outbox_pending:
                        await self._drain(await self._own_lane())
                    if self._orphans:
                        await self._drain_orphans()
                except Exception:  # the task must survive anything
                    log.exception("outbox drain failed")
            waiting = self._outbox_pending or (self._orphans and bool(self.service_url))
            if time.monotonic() - self._checked > ORPHAN_CHECK:
                await self._refresh_gauges()  # also notices another lane's rows (while busy, too)
            try:
                first = await asyncio.wait_for(self._queue.get(), DRAIN_INTERVAL if waiting else ORPHAN_CHECK)
            except TimeoutError:
                await self._refresh_gauges()
                continue
            batch = [first]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = batch
            try:
                lane = await self._own_lane()
                numbered = await self._number(lane, [event for event, _ in batch])
                batch = [(event, policy) for event, (_, policy) in zip(numbered, batch, strict=True)]
                self._inflight = batch
                if self._outbox_pending or not self.service_url:
                    await self._to_outbox(batch)
                else:
                    await self._send_with_retries(lane, batch)
            except Exception:
                log.exception("event sender failed; keeping the batch in the outbox")
                with contextlib.suppress(Exception):
                    await self._to_outbox(self._inflight)
            # not in `finally`: when close() cancels mid-send, it outboxes what is still in flight
            self._inflight = []
            for _ in range(len(batch)):
                self._queue.task_done()

    async def _send_with_retries(self, lane: Lane, batch: list[tuple[OutboxEvent, RetryPolicy]]) -> None:
        """Retry the failed part (in sequence order) with a doubling delay; once any event is out of
        retries, every still-failed event goes to the outbox together, in order."""
        pending = batch
        attempt = 0
        while True:
            results = await self._send_lane(lane, [event for event, _ in pending])
            failed = [
                ((event, policy), error)
                for (_, policy), (event, error) in zip(pending, results, strict=True)
                if error is not None
            ]
            # what is still in flight, as it now stands (numbering, `attempted`), for close()
            self._inflight = [item for item, _ in failed]
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
            pending = sorted((item for item, _ in failed), key=lambda item: item[0].seq or 0)

    async def _send_lane(
        self, lane: Lane, events: Sequence[OutboxEvent]
    ) -> list[tuple[OutboxEvent, BaseException | None]]:
        """Send one lane's events (numbered); per event: (the event as it now stands, None or the
        error). Failed events keep their id unless it had to change."""
        current = list(events)
        results: list[tuple[OutboxEvent, BaseException | None]] = [(e, None) for e in current]
        by_topic: dict[str, list[int]] = {}
        for index, event in enumerate(current):
            by_topic.setdefault(event.topic, []).append(index)
        producers: dict[str, Any] = {}
        for topic, indexes in by_topic.items():
            try:
                producer = await self._producer(lane, topic)
                if not producer.is_connected():
                    self._maybe_recreate(lane, topic)
                    raise BrokerUnreachable(f"producer {lane.name} for {topic} is not connected")
            except Exception as exc:  # noqa: BLE001 - nothing of this topic is sent: all fail with it
                for index in indexes:
                    results[index] = (current[index], exc)
                continue
            lane.down_since.pop(topic, None)
            producers[topic] = producer
        # Never sent, but a later id of the lane may have landed: under its own id the broker would
        # drop it. A new id above everything sent cannot make a duplicate (it never left).
        stale = [
            i
            for topic in producers
            for i in by_topic[topic]
            if not current[i].attempted and (current[i].seq or 0) <= lane.sent_high.get(topic, -1)
        ]
        if stale:
            await self._renumber(lane, current, stale, "overtaken before its first send")
        sending = [
            i for topic in producers for i in sorted(by_topic[topic], key=lambda i: current[i].seq or 0)
        ]
        if not sending:
            return results
        # write-ahead: a row handed to a producer may land, so a later drop of its resend is a duplicate
        await self.outbox.update(
            [replace(current[i], attempted=True) for i in sending if not current[i].attempted]
        )
        # one task per send, created in sequence order: each hands its message to the producer
        # before the next starts, so a topic's sends leave in sequence order
        outcomes = await asyncio.gather(
            *(self._transmit(producers[current[i].topic], current[i]) for i in sending),
            return_exceptions=True,
        )
        handed: dict[str, int] = {}  # per topic, the highest id that left in this pass (may have landed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s pass: %s",
                lane.name,
                [
                    (current[i].seq, current[i].attempted, str(o))
                    for i, o in zip(sending, outcomes, strict=True)
                ],
            )
        restore: list[OutboxEvent] = []  # rows whose write-ahead mark is undone (never left)
        for index, outcome in zip(sending, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            before = current[index]
            event = replace(before, attempted=True)
            if isinstance(outcome, BaseException) and _never_sent(outcome):
                if not before.attempted:
                    restore.append(before)
                results[index] = (before, outcome)
                continue
            handed[event.topic] = max(handed.get(event.topic, -1), event.seq or 0)
            lane.sent_high[event.topic] = max(lane.sent_high.get(event.topic, -1), event.seq or 0)
            if isinstance(outcome, BaseException):
                results[index] = (event, outcome)
                continue
            # a -1:-1 receipt: the broker holds this (name, id) already. Taken at its word even for
            # an event this process never sent before (seen under SIGSTOP/SIGCONT for sends that
            # did land); an id that could be below the broker's highest without having landed is
            # renumbered before it is sent (above), never after.
            outcome_name = (
                "deduplicated" if _deduplicated(outcome) else "drained" if event.row_id else "published"
            )
            self._metrics.events.labels(event.topic, outcome_name).inc()
            results[index] = (event, None)
        lost: list[int] = []
        for index in sending:
            event, error = results[index]
            current[index] = event
            if error is not None and _never_sent(error) and (event.seq or 0) < handed.get(event.topic, -1):
                # it did not leave, a later id did and may have landed: under its id it could be
                # dropped. (If an earlier send of it landed, the new id makes a duplicate: nothing
                # lost beats no duplicates.)
                lost.append(index)
                results[index] = (event, Renumbered(f"{lane.name} seq {event.seq} overtaken: {error}"))
        if lost:
            for topic in {current[i].topic for i in lost}:
                with contextlib.suppress(Exception):
                    lane.floor = max(lane.floor, int(producers[topic].last_sequence_id()) + 1)
            renumbered = await self._renumber(lane, current, lost, "overtaken in the pass", persist=False)
            for index in lost:
                results[index] = (current[index], results[index][1])
            restore = [e for e in restore if e.row_id not in {r.row_id for r in renumbered}] + renumbered
        await self.outbox.update(restore)
        return results

    async def _renumber(
        self, lane: Lane, current: list[OutboxEvent], indexes: list[int], why: str, *, persist: bool = True
    ) -> list[OutboxEvent]:
        """New ids above anything the lane sent, for events that must not be sent under their old one."""
        for seq in lane.sent_high.values():
            lane.floor = max(lane.floor, seq + 1)
        log.warning("%s: %d event(s) renumbered (%s)", lane.name, len(indexes), why)
        renumbered = await self._number(lane, [current[i] for i in indexes])
        for index, event in zip(indexes, renumbered, strict=True):
            current[index] = event
        if persist:
            await self.outbox.update(renumbered)
        return renumbered

    async def _transmit(self, producer: Any, event: OutboxEvent) -> Any:
        """One send; the broker's receipt (a message id; -1:-1 when deduplication dropped it)."""
        return await producer.send(
            event.payload,
            properties=event.properties,
            partition_key=event.partition_key,
            sequence_id=event.seq,
        )

    def _maybe_recreate(self, lane: Lane, topic: str) -> None:
        """A producer the client gave up on stays disconnected: drop it after a while, so the
        next send creates a fresh one (same name)."""
        now = time.monotonic()
        since = lane.down_since.setdefault(topic, now)
        if now - since > RECREATE_AFTER:
            lane.down_since.pop(topic, None)
            producer = lane.producers.pop(topic, None)
            if producer is not None:
                task = asyncio.get_running_loop().create_task(producer.close())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _producer(self, lane: Lane, topic: str) -> Any:
        producer = lane.producers.get(topic)
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
            # Unbatched: a batch is deduplicated as a whole by its first id, so a resend grouped
            # differently from the first send could be dropped with new events inside it.
            producer = await self._client.create_producer(
                topic,
                producer_name=lane.name,
                send_timeout_millis=int(self.send_timeout * 1000),
                batching_enabled=False,
                block_if_queue_full=False,
                max_pending_messages=max(1000, 2 * BATCH),
            )
            stored = int(producer.last_sequence_id())  # the broker's highest for the name (-1: none)
            lane.floor = max(lane.floor, stored + 1)
            lane.sent_high[topic] = max(lane.sent_high.get(topic, -1), stored)
            lane.producers[topic] = producer
        return producer

    # -- outbox -----------------------------------------------------------------------------------
    async def _to_outbox(self, items: Sequence[tuple[OutboxEvent, RetryPolicy]]) -> None:
        fresh = [event for event, _ in items if event.row_id is None]
        unnumbered = [event for event in fresh if event.seq is None]
        if unnumbered:  # queued but never taken up by the sender (shutdown): number them now
            numbered = iter(await self._number(await self._own_lane(), unnumbered))
            fresh = [next(numbered) if event.seq is None else event for event in fresh]
        await self.outbox.append(fresh)
        for event in fresh:
            self._metrics.events.labels(event.topic, "outboxed").inc()
        self._outbox_pending = True
        if time.monotonic() - self._checked >= GAUGES_EVERY:
            await self._refresh_gauges()
        else:  # counted a moment ago (a count reads every row): add what was appended
            self._size += len(fresh)
            self._metrics.outbox_size.set(self._size)

    async def _drain(self, lane: Lane) -> bool:
        """Send a lane's rows in sequence order; stop at the first failed pass (the rest waits for
        the next one). True when the lane is empty."""
        try:
            while True:
                rows = await self.outbox.peek(BATCH, lane.number)
                if not rows:
                    if lane is self._own:
                        self._outbox_pending = False
                    return True
                results = await self._send_lane(lane, rows)
                await self.outbox.delete(
                    [event.row_id for event, error in results if error is None and event.row_id is not None]
                )
                if any(error is not None for _, error in results):
                    return False
        finally:
            await self._refresh_gauges()

    async def _drain_orphans(self) -> None:
        """Rows of lanes no live process holds (a worker that is gone): drain them under their own
        producer name, holding that lane's lock meanwhile."""
        own = await self._own_lane()
        self._orphans = False
        for number in await self.outbox.lanes_with_rows():
            if number == own.number:
                continue
            if not await self.outbox.try_lock(number):
                self._orphans = True  # its process lives (and drains it), or another is draining it
                continue
            lane = await self._open_lane(number)
            try:
                if not await self._drain(lane):
                    self._orphans = True
            finally:
                await self._close_lane(lane)
                await self.outbox.unlock(number)

    async def _refresh_gauges(self) -> None:
        try:
            lane = self._own.number if self._own is not None else None
            size, age, mine = await self.outbox.lane_stats(lane) if lane is not None else (0, 0.0, 0)
            if lane is None:
                size, age = await self.outbox.stats()
                mine = size
        except Exception:  # a broken outbox file is logged, never fatal to the sender
            log.exception("cannot read the outbox at %s", self.outbox.path)
            return
        self._checked = time.monotonic()
        self._size = size
        self._metrics.outbox_size.set(size)
        self._metrics.outbox_oldest_age.set(age)
        if mine == 0 and not self._inflight:
            self._outbox_pending = False
        elif mine:
            self._outbox_pending = True
        if size > mine:
            self._orphans = True
