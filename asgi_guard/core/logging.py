"""Structured logs: one JSON access event per request on "asgi_guard.access", and a JSON formatter.

Standard `logging` all the way, so applications keep their own handlers. The access event's message is
a `JsonMessage`: any formatter prints it as one JSON line; `JsonFormatter` merges its fields into the
record's own JSON. Every asgi_guard logger carries the redaction filter (security/redaction.py).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asgi_guard.core.redaction import Redactor

ACCESS_LOGGER = "asgi_guard.access"
access_log = logging.getLogger(ACCESS_LOGGER)


class JsonMessage:
    """A log message that is a flat-ish dict, rendered as JSON only when a handler formats it."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return json.dumps(self.fields, separators=(",", ":"), default=str)

    def redacted(self, redactor: Redactor, secrets: tuple[str, ...]) -> JsonMessage:
        return JsonMessage(redactor.value(self.fields, secrets))


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (or the event's fields), extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        if isinstance(record.msg, JsonMessage):
            doc.update(record.msg.fields)
        else:
            doc["message"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = record.stack_info
        return json.dumps(doc, separators=(",", ":"), default=str)
