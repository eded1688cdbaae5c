"""The guard's labelled metric children are made on first update (start-up memory for big apps)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asgi_guard.core.metrics import LazyChild, metrics_for


def test_a_child_appears_on_first_update_only() -> None:
    registry = CollectorRegistry()
    metrics = metrics_for(registry)
    hits = metrics.cache.labels("orders", "hit")
    assert isinstance(hits, LazyChild)
    assert b'route="orders"' not in generate_latest(registry)  # nothing counted yet: no series
    hits.inc()
    hits.inc(2)
    assert b'asgi_guard_cache_lookups_total{result="hit",route="orders"} 3.0' in generate_latest(registry)
    latency = metrics.request_latency.labels("orders")
    latency.observe(0.01)
    assert b'asgi_guard_request_duration_seconds_count{route="orders"} 1.0' in generate_latest(registry)
    state = metrics.circuit_state.labels("orders")
    state.set(2)
    assert b'asgi_guard_circuit_state{route="orders"} 2.0' in generate_latest(registry)


def test_label_count_is_checked_when_the_child_is_named() -> None:
    metrics = metrics_for(CollectorRegistry())
    with pytest.raises(ValueError):
        metrics.cache.labels("orders")  # the result label is missing


def test_collectors_are_shared_and_checked_once_per_registry() -> None:
    registry = CollectorRegistry()
    assert metrics_for(registry) is metrics_for(registry)
    assert metrics_for(registry).cache is not metrics_for(CollectorRegistry()).cache
