"""No event lost: without a broker events wait in the durable outbox, then arrive in order, once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pulsar_helpers import body, make_app, publisher_of, receive_all, subscribe

from asgi_guard_dev.pulsar import PulsarBroker

pytestmark = pytest.mark.pulsar


def outbox_rows(path: Path) -> list[str]:
    """Request ids waiting in the outbox file, oldest first (read as any operator would)."""
    import json

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
    return [json.loads(row[0])["request_id"] for row in rows]


async def wait_drained(path: Path, timeout: float = 90.0) -> None:
    for _ in range(int(timeout / 0.2)):
        if not outbox_rows(path):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"outbox still holds {outbox_rows(path)}")


async def wait_gauge(name: str, value: float, timeout: float = 30.0) -> None:
    """The publisher sets its gauges after the rows it sent are deleted (another thread hop): a
    reader that saw the rows go waits for the gauge too (on a loaded machine it lagged)."""
    for _ in range(int(timeout / 0.05)):
        if REGISTRY.get_sample_value(name) == value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} is {REGISTRY.get_sample_value(name)}, not {value}")


async def test_without_pulsar_url_events_go_to_the_outbox(topic: str, tmp_path: Path, make_client) -> None:
    outbox = tmp_path / "outbox.db"
    guard = make_app(outbox, None, topic)
    http = make_client(guard)
    for i in range(3):
        assert (await http.post(f"/items/{i}", headers={"X-Request-ID": f"n{i}"})).status_code == 200
    offload = make_app(tmp_path / "jobs.db", None, topic, mode="offload")
    response = await make_client(offload).post("/items/5", json={"a": 1})
    assert response.status_code == 202 and len(response.json()["job_id"]) == 32
    await guard.runtime.shutdown()  # graceful shutdown flushes the queue into the outbox
    await offload.runtime.shutdown()
    assert outbox_rows(outbox) == ["n0", "n1", "n2"]
    assert len(outbox_rows(tmp_path / "jobs.db")) == 1
    assert REGISTRY.get_sample_value("asgi_guard_outbox_size") is not None


async def test_start_up_drains_the_outbox_in_order(
    pulsar_url: str, topic: str, tmp_path: Path, make_client
) -> None:
    outbox = tmp_path / "outbox.db"
    offline = make_app(outbox, None, topic)
    http = make_client(offline)
    for i in range(5):
        assert (await http.post(f"/items/{i}", headers={"X-Request-ID": f"s{i}"})).status_code == 200
    await offline.runtime.shutdown()
    assert outbox_rows(outbox) == [f"s{i}" for i in range(5)]

    client, consumer = await subscribe(pulsar_url, topic)
    online = make_app(outbox, pulsar_url, topic)
    try:
        await online.runtime.startup()  # process start-up: the outbox drains without any request
        messages = await receive_all(consumer, 5)
        await wait_drained(outbox)
    finally:
        await online.runtime.shutdown()
        await client.close()
    assert [body(m)["request_id"] for m in messages] == [f"s{i}" for i in range(5)]
    assert [m.partition_key() for m in messages] == [str(i) for i in range(5)]
    assert REGISTRY.get_sample_value("asgi_guard_events_total", {"topic": topic, "outcome": "drained"}) == 5


async def test_broker_outage_events_wait_then_arrive_in_order_none_twice(
    pulsar_broker: PulsarBroker, topic: str, tmp_path: Path, make_client
) -> None:
    url = pulsar_broker.service_url
    outbox = tmp_path / "outbox.db"
    guard = make_app(outbox, url, topic, send_timeout=1.0, max_retries=1, retry_delay=0.05)
    publisher = publisher_of(guard)
    client, consumer = await subscribe(url, topic)  # the durable subscription outlives the outage
    await client.close()
    http = make_client(guard)
    try:
        assert (await http.post("/items/0", headers={"X-Request-ID": "o0"})).status_code == 200
        await publisher.wait_idle()
        await asyncio.to_thread(pulsar_broker.stop)
        try:
            for i in range(1, 6):
                response = await http.post(f"/items/{i % 2}", headers={"X-Request-ID": f"o{i}"})
                assert response.status_code == 200  # requests still succeed
            await publisher.wait_idle(60)
            assert outbox_rows(outbox) == [f"o{i}" for i in range(1, 6)]
            assert REGISTRY.get_sample_value("asgi_guard_outbox_size") == 5
        finally:
            await asyncio.to_thread(pulsar_broker.start)
        # one more while the backlog drains: it must queue behind the backlog, not overtake it
        assert (await http.post("/items/1", headers={"X-Request-ID": "o6"})).status_code == 200
        await wait_drained(outbox)
        await wait_gauge("asgi_guard_outbox_size", 0)
        client, consumer = await subscribe(url, topic)
        messages = await receive_all(consumer, 7, quiet=2.0)
        await client.close()
    finally:
        await guard.runtime.shutdown()
    assert [body(m)["request_id"] for m in messages] == [f"o{i}" for i in range(7)]
    outboxed = REGISTRY.get_sample_value("asgi_guard_events_total", {"topic": topic, "outcome": "outboxed"})
    assert outboxed is not None and outboxed >= 5


async def test_a_growing_outbox_is_not_counted_on_every_append(
    topic: str, tmp_path: Path, make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the broker is away the outbox grows, and a count reads every row: appends count it at
    most once a second and keep the size gauge exact in between (before, every append counted the
    whole table, so a long outage made each request's events dearer)."""
    from asgi_guard.stages.events.outbox import Outbox

    counts = {"n": 0}
    stats = Outbox._stats

    def counted(self: Outbox, lane: int | None) -> tuple[int, float, int]:
        counts["n"] += 1
        return stats(self, lane)

    monkeypatch.setattr(Outbox, "_stats", counted)
    guard = make_app(tmp_path / "outbox.db", None, topic)
    http = make_client(guard)
    publisher = publisher_of(guard)
    try:
        for i in range(40):
            assert (await http.post(f"/items/{i}", headers={"X-Request-ID": f"g{i}"})).status_code == 200
            await publisher.wait_idle()  # each request's event appended on its own
        assert counts["n"] <= 5  # start-up, then about once a second
        assert REGISTRY.get_sample_value("asgi_guard_outbox_size") == 40
    finally:
        await guard.runtime.shutdown()
    assert len(outbox_rows(tmp_path / "outbox.db")) == 40
