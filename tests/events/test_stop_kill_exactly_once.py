"""Exactly once on the topic while the real broker is stopped (SIGSTOP) or killed (SIGKILL) and
restarted mid-stream. In a file of its own that sorts after the other broker tests: a killed broker
comes back cold, and the session shares it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pulsar_helpers import drained, receive_all, subscribe

from asgi_guard.stages.events import publisher as publisher_module
from asgi_guard.stages.events.outbox import Outbox, OutboxEvent
from asgi_guard.stages.events.publisher import EventPublisher, RetryPolicy
from asgi_guard_dev.pulsar import PulsarBroker

pytestmark = pytest.mark.pulsar


@pytest.fixture(autouse=True)
def quick_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher_module, "DRAIN_INTERVAL", 0.05)


def ids(messages: list[Any]) -> Counter[str]:
    return Counter(json.loads(m.data())["id"] for m in messages)


def _broker_signal(broker: PulsarBroker, sig: int) -> None:
    assert broker.process is not None
    os.killpg(broker.process.pid, sig)


async def test_broker_stopped_during_publishing_each_event_once(
    pulsar_broker: PulsarBroker, topic: str, tmp_path: Path
) -> None:
    """SIGSTOP the broker while events flow: sends time out, are retried and outboxed while the
    frozen broker's socket still holds them; on SIGCONT it stores them, and the drain's resends are
    dropped. Each event is on the topic once."""
    url = pulsar_broker.service_url
    publisher = EventPublisher(url, Outbox(tmp_path / "o.db"), send_timeout=1.0)
    policy = RetryPolicy(max_retries=1, retry_delay=0.05)
    client, consumer = await subscribe(url, topic)
    await client.close()
    await publisher.start()
    stopped = False
    try:
        for i in range(60):
            publisher.submit(OutboxEvent(topic, json.dumps({"id": f"s{i}"}).encode(), str(i % 4), {}), policy)
            if i == 15:
                await asyncio.sleep(0.3)
                _broker_signal(pulsar_broker, signal.SIGSTOP)
                stopped = True
            if i == 40:
                await asyncio.sleep(3.0)  # past send time-out and retries: some go to the outbox
                _broker_signal(pulsar_broker, signal.SIGCONT)
                stopped = False
            await asyncio.sleep(0.02)
        await drained(publisher, 90)
    finally:
        if stopped:
            _broker_signal(pulsar_broker, signal.SIGCONT)
        await publisher.close()
    client, consumer = await subscribe(url, topic)
    try:
        messages = await receive_all(consumer, 60, quiet=2.0)
    finally:
        await client.close()
    assert ids(messages) == {f"s{i}": 1 for i in range(60)}
    # the outage did make resends of stored messages (the sensitivity of this test): the broker dropped them
    dropped = REGISTRY.get_sample_value(
        "asgi_guard_events_total", {"topic": topic, "outcome": "deduplicated"}
    )
    assert dropped is not None and dropped >= 1


async def test_broker_killed_during_publishing_each_event_once(
    pulsar_broker: PulsarBroker, topic: str, tmp_path: Path
) -> None:
    """SIGKILL the broker mid-stream and start it again (same data): what it stored before dying is
    kept, what it did not is resent; each event is on the topic once after the outbox drains."""
    url = pulsar_broker.service_url
    publisher = EventPublisher(url, Outbox(tmp_path / "o.db"), send_timeout=1.0)
    policy = RetryPolicy(max_retries=1, retry_delay=0.05)
    client, consumer = await subscribe(url, topic)
    await client.close()
    await publisher.start()
    try:
        for i in range(40):
            publisher.submit(OutboxEvent(topic, json.dumps({"id": f"k{i}"}).encode(), str(i % 4), {}), policy)
            if i == 20:
                _broker_signal(pulsar_broker, signal.SIGKILL)
                assert pulsar_broker.process is not None
                pulsar_broker.process.wait(10)
                pulsar_broker.process = None
            await asyncio.sleep(0.02)
        await publisher.wait_idle(60)
        started = time.monotonic()
        await asyncio.to_thread(pulsar_broker.start)
        logging.getLogger(__name__).info("broker back in %.1fs", time.monotonic() - started)
        await drained(publisher, 120)
    finally:
        if pulsar_broker.process is None:
            await asyncio.to_thread(pulsar_broker.start)
        await publisher.close()
    client, consumer = await subscribe(url, topic)
    try:
        messages = await receive_all(consumer, 40, quiet=2.0)
    finally:
        await client.close()
    assert ids(messages) == {f"k{i}": 1 for i in range(40)}
