"""Event publishing to Apache Pulsar: background publisher, durable outbox, job worker.

The helpers are imported on first use (nothing of Pulsar loads with `import asgi_guard`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from asgi_guard.stages.events.outbox import Outbox, OutboxEvent
    from asgi_guard.stages.events.publisher import EventPublisher, RetryPolicy

__getattr__ = lazy_exports(
    __name__,
    {"EventPublisher": "publisher", "Outbox": "outbox", "OutboxEvent": "outbox", "RetryPolicy": "publisher"},
)

__all__ = ["EventPublisher", "Outbox", "OutboxEvent", "RetryPolicy"]
