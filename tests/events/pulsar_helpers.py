"""Builders shared by the event tests: a guarded Starlette app and real Pulsar consumers."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pulsar
from pulsar.asyncio import Client, PulsarException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import PulsarLabelingConfig
from asgi_guard.stages.events.publisher import EventPublisher
from asgi_guard.stages.events.stage import get_publisher

QUIET = logging.getLogger("asgi_guard.events.pulsar")
QUIET.setLevel(logging.WARNING)


class Handled:
    """Counts handler calls (offload must not run the handler in-process)."""

    calls = 0


def make_app(
    outbox: Path, pulsar_url: str | None, topic: str, *, status: int = 200, **labeling: Any
) -> GuardMiddleware:
    async def handler(request: Request) -> JSONResponse:
        Handled.calls += 1
        return JSONResponse({"stored": request.path_params["resource_id"]}, status_code=status)

    app = Starlette(routes=[Route("/items/{resource_id}", handler, methods=["POST"])])
    registry = RouteRegistry()
    registry.register(
        "/items/{resource_id}",
        JobConfig(
            endpoint_name="store_item",
            pulsar_labeling=PulsarLabelingConfig(enabled=True, job_topic=topic, **labeling),
        ),
        methods=["POST"],
    )
    # metrics are opt-in: collected (not served) because these tests read the counters
    settings = GuardSettings(pulsar_url=pulsar_url, outbox_path=str(outbox), metrics_collect=True)
    return GuardMiddleware(app, registry=registry, settings=settings)


def publisher_of(guard: GuardMiddleware) -> EventPublisher:
    return get_publisher(guard.runtime)


async def subscribe(pulsar_url: str, topic: str, subscription: str = "test") -> tuple[Client, Any]:
    client = Client(pulsar_url, logger=QUIET)
    consumer = await client.subscribe(topic, subscription, initial_position=pulsar.InitialPosition.Earliest)
    return client, consumer


async def receive_all(consumer: Any, expected: int, timeout: float = 30.0, quiet: float = 1.0) -> list[Any]:
    """Read `expected` messages, then keep listening `quiet` seconds to catch any duplicate."""
    messages: list[Any] = []
    while len(messages) < expected:
        message = await asyncio.wait_for(consumer.receive(), timeout)
        await consumer.acknowledge(message)
        messages.append(message)
    try:
        while True:
            message = await asyncio.wait_for(consumer.receive(), quiet)
            await consumer.acknowledge(message)
            messages.append(message)
    except TimeoutError:
        pass
    return messages


def body(message: Any) -> dict[str, Any]:
    return json.loads(message.data())  # type: ignore[no-any-return]


class Injected:
    """Fault modes for `FaultyPublisher`: what happens to one send (the producer and broker are real)."""

    OK = "ok"  # sent; the broker's receipt is returned
    UNSENT = "unsent"  # rejected client-side before it leaves the process (like a full producer queue)
    ACK_LOST = "ack_lost"  # sent and stored, but the caller sees a time-out (the receipt was lost)
    TIMEOUT = "timeout"  # never reaches the broker and the caller sees a time-out


class FaultyPublisher(EventPublisher):
    """The real publisher with faults injected around its real producer's `send`.

    `plan` maps (pass number, position in that pass) to a mode; a pass is one `_send_lane` call (one
    send round of fresh events, a retry, or an outbox drain). Unplanned sends are OK. `log` records
    (pass, payload, mode) for every send.
    """

    def __init__(self, *args: Any, plan: dict[tuple[int, int], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan or {}
        self.passes = -1
        self.position = 0
        self.log: list[tuple[int, bytes, str]] = []

    async def _send_lane(self, lane: Any, events: Any) -> Any:
        self.passes += 1
        self.position = 0
        return await super()._send_lane(lane, events)

    async def _transmit(self, producer: Any, event: Any) -> Any:
        mode = self.plan.get((self.passes, self.position), Injected.OK)
        self.position += 1
        self.log.append((self.passes, event.payload, mode))
        if mode == Injected.UNSENT:
            raise PulsarException(pulsar.Result.ProducerQueueIsFull)
        if mode == Injected.TIMEOUT:
            raise PulsarException(pulsar.Result.Timeout)
        receipt = await super()._transmit(producer, event)
        if mode == Injected.ACK_LOST:
            raise PulsarException(pulsar.Result.Timeout)
        return receipt


async def drained(publisher: EventPublisher, timeout: float = 60.0) -> None:
    """Wait until nothing is queued and the outbox file is empty."""
    await publisher.wait_idle(timeout)
    for _ in range(int(timeout / 0.05)):
        if (await publisher.outbox.stats())[0] == 0 and publisher._queue.empty():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"outbox still holds {(await publisher.outbox.stats())[0]} rows")
