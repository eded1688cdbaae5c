"""Log and export every state change pybreaker reports (logger "asgi_guard.circuit_breaker")."""

from __future__ import annotations

import logging
from typing import Any

import pybreaker

from asgi_guard.core.metrics import GuardMetrics, get_metrics
from asgi_guard.stages.circuit_breaker.store import STATE_CODES

log = logging.getLogger("asgi_guard.circuit_breaker")


class StateChangeListener(pybreaker.CircuitBreakerListener):
    def __init__(self, route: str, metrics: GuardMetrics | None = None) -> None:
        metrics = metrics or get_metrics()
        self.route = route
        self._gauge = metrics.circuit_state.labels(route)
        self._transitions = metrics.circuit_transitions
        self._gauge.set(0)

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else None
        new = new_state.name
        if old == new:
            return
        self._gauge.set(STATE_CODES[new])
        self._transitions.labels(self.route, new).inc()
        level = logging.WARNING if new == pybreaker.STATE_OPEN else logging.INFO
        log.log(
            level, "circuit %s: %s -> %s", self.route, old, new, extra={"route": self.route, "state": new}
        )
