"""Event publishing to Apache Pulsar: background publisher, durable outbox, job worker."""

from .outbox import Outbox, OutboxEvent
from .publisher import EventPublisher, RetryPolicy

__all__ = ["EventPublisher", "Outbox", "OutboxEvent", "RetryPolicy"]
