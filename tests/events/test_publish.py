"""`publish` mode against a real broker: one event per successful request, read back by a consumer."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pulsar_helpers import body, make_app, publisher_of, receive_all, subscribe

from asgi_guard.stages.events.envelope import EVENT_SCHEMA

pytestmark = pytest.mark.pulsar


async def test_event_lands_with_key_properties_and_body(
    pulsar_url: str, topic: str, tmp_path: Path, make_client
) -> None:
    guard = make_app(
        tmp_path / "outbox.db",
        pulsar_url,
        topic,
        event_label="item.stored",
        producer_label="api-1",
        cluster_name="standalone",
    )
    client, consumer = await subscribe(pulsar_url, topic)
    try:
        http = make_client(guard)
        response = await http.post("/items/42", json={"x": 1}, headers={"X-Request-ID": "req-42"})
        assert response.status_code == 200
        assert response.json() == {"stored": "42"}
        [message] = await receive_all(consumer, 1)
    finally:
        await guard.runtime.shutdown()
        await client.close()

    assert message.partition_key() == "42"
    assert message.properties() == {
        "producer": "api-1",
        "event": "item.stored",
        "cluster": "standalone",
        "schema": EVENT_SCHEMA,
        "kind": "event",
    }
    event = body(message)
    assert event["schema"] == EVENT_SCHEMA
    assert event["event"] == "item.stored"
    assert event["endpoint"] == "store_item"
    assert event["route"] == "/items/{resource_id}"
    assert event["resource_id"] == "42"
    assert event["subject"] is None
    assert event["status"] == 200
    assert event["request_id"] == "req-42"
    assert isinstance(event["latency_ms"], float) and event["latency_ms"] >= 0
    assert isinstance(event["trace"], dict)
    assert len(event["event_id"]) == 32
    published = {"topic": topic, "outcome": "published"}
    assert REGISTRY.get_sample_value("asgi_guard_events_total", published) == 1


async def test_failed_request_publishes_nothing(
    pulsar_url: str, topic: str, tmp_path: Path, make_client
) -> None:
    failing = make_app(tmp_path / "a.db", pulsar_url, topic, status=500)
    ok = make_app(tmp_path / "b.db", pulsar_url, topic)
    client, consumer = await subscribe(pulsar_url, topic)
    try:
        assert (await make_client(failing).post("/items/1")).status_code == 500
        await publisher_of(failing).wait_idle()
        assert (await make_client(ok).post("/items/2")).status_code == 200
        messages = await receive_all(consumer, 1)
    finally:
        await failing.runtime.shutdown()
        await ok.runtime.shutdown()
        await client.close()
    assert [body(m)["resource_id"] for m in messages] == ["2"]


async def test_one_resource_keeps_its_order(pulsar_url: str, topic: str, tmp_path: Path, make_client) -> None:
    guard = make_app(tmp_path / "outbox.db", pulsar_url, topic)
    client, consumer = await subscribe(pulsar_url, topic)
    try:
        http = make_client(guard)
        for i in range(20):
            response = await http.post("/items/7", headers={"X-Request-ID": f"r{i}"})
            assert response.status_code == 200
        messages = await receive_all(consumer, 20)
    finally:
        await guard.runtime.shutdown()
        await client.close()
    assert [body(m)["request_id"] for m in messages] == [f"r{i}" for i in range(20)]
    assert {m.partition_key() for m in messages} == {"7"}
