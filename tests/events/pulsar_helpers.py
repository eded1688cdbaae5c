"""Builders shared by the event tests: a guarded Starlette app and real Pulsar consumers."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pulsar
from pulsar.asyncio import Client
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
