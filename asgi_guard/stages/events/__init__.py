"""Event publishing to Apache Pulsar: background publisher, durable outbox, job worker."""

from asgi_guard.stages.events.outbox import Outbox, OutboxEvent
from asgi_guard.stages.events.publisher import EventPublisher, RetryPolicy

__all__ = ["EventPublisher", "Outbox", "OutboxEvent", "RetryPolicy"]
