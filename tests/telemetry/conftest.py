"""Telemetry fixtures: one SDK tracer provider for the process, with an in-memory exporter.

The global provider can be set only once per process, so it is installed once and each test clears
the exporter. The library itself never sets it; only these tests do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()


def _install() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture(scope="session")
def _tracer_provider() -> InMemorySpanExporter:
    _install()
    return _EXPORTER


@pytest.fixture
def spans(_tracer_provider: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The exporter, empty at the start of the test (build apps after requesting this fixture)."""
    _tracer_provider.clear()
    yield _tracer_provider
    _tracer_provider.clear()
