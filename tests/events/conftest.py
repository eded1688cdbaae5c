"""A real Apache Pulsar standalone broker for the whole session (started once: 10-90 s).

Without Java or the distribution the Pulsar tests skip with the reason, unless
ASGI_GUARD_REQUIRE_PULSAR=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from asgi_guard_dev.pulsar import PulsarBroker, PulsarUnavailable, start_standalone


def _unavailable(reason: str) -> None:
    if os.environ.get("ASGI_GUARD_REQUIRE_PULSAR") == "1":
        pytest.fail(f"ASGI_GUARD_REQUIRE_PULSAR=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pulsar_broker() -> Iterator[PulsarBroker]:
    """One real broker; a test may `stop()` and `start()` it (same ports and data directory)."""
    try:
        import pulsar  # noqa: F401
    except ImportError:
        _unavailable('pulsar-client is not installed (pip install "asgi-guard[pulsar]")')
    try:
        broker = start_standalone()
    except PulsarUnavailable as exc:
        _unavailable(f"Pulsar cannot run here: {exc}")
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def pulsar_url(pulsar_broker: PulsarBroker) -> str:
    return pulsar_broker.service_url


@pytest.fixture
def topic() -> str:
    """A fresh topic per test, so tests never read each other's messages."""
    return f"persistent://public/default/t-{uuid.uuid4().hex[:12]}"
