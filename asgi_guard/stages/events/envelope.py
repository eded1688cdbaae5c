"""The wire form of events and jobs: versioned JSON, so consumers can evolve safely."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

EVENT_SCHEMA = "asgi-guard.event/1"
JOB_SCHEMA = "asgi-guard.job/1"


def _trace_injector() -> Callable[[], dict[str, str]]:
    """The telemetry stage's injector when it exists, else W3C propagation from the global API."""
    try:
        found = getattr(importlib.import_module("asgi_guard.core.tracing"), "inject_trace_context", None)
    except ImportError:
        found = None
    if callable(found):
        return found  # type: ignore[no-any-return]

    def inject() -> dict[str, str]:
        carrier: dict[str, str] = {}
        try:
            from opentelemetry.propagate import inject as otel_inject

            otel_inject(carrier)
        except Exception:  # noqa: BLE001 - tracing must never break publishing
            return {}
        return carrier

    return inject


trace_context = _trace_injector()


def new_id() -> str:
    return uuid.uuid4().hex


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def now_ms() -> int:
    return int(time.time() * 1000)
