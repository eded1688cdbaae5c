"""Per-route circuit breakers (stage 7): pybreaker's state machine, in-process or shared via Valkey.

The helpers below are imported on first use (pybreaker is not loaded by `import asgi_guard`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from asgi_guard.core.metrics import GuardMetrics
    from asgi_guard.stages.circuit_breaker.listener import StateChangeListener
    from asgi_guard.stages.circuit_breaker.memory import LocalBreaker
    from asgi_guard.stages.circuit_breaker.reference import ReferenceBreaker
    from asgi_guard.stages.circuit_breaker.store import ADMIT_CLOSED, STATE_CODES, Admission, Breaker
    from asgi_guard.stages.circuit_breaker.valkey import SharedBreaker
    from asgi_guard.state import Backend


def make_breaker(
    backend: Backend,
    name: str,
    threshold: int,
    timeout: float,
    lease: float,
    metrics: GuardMetrics | None = None,
) -> Breaker:
    """The breaker form that matches `backend` (chosen once per route); state changes go to
    `metrics` (the app's, default the global registry's)."""
    from asgi_guard.stages.circuit_breaker.listener import StateChangeListener
    from asgi_guard.stages.circuit_breaker.memory import LocalBreaker
    from asgi_guard.stages.circuit_breaker.valkey import SharedBreaker
    from asgi_guard.state import choose

    listener = StateChangeListener(name, metrics)
    return choose(
        backend,
        memory=lambda b: LocalBreaker(name, threshold, timeout, lease, listener, b.clock),
        valkey=lambda b: SharedBreaker(b, name, threshold, timeout, lease, listener),
        concern="the circuit breaker",
    )


__getattr__ = lazy_exports(
    __name__,
    {
        "ADMIT_CLOSED": "store",
        "STATE_CODES": "store",
        "Admission": "store",
        "Breaker": "store",
        "LocalBreaker": "memory",
        "ReferenceBreaker": "reference",
        "SharedBreaker": "valkey",
        "StateChangeListener": "listener",
    },
)

__all__ = [
    "ADMIT_CLOSED",
    "STATE_CODES",
    "Admission",
    "Breaker",
    "LocalBreaker",
    "ReferenceBreaker",
    "SharedBreaker",
    "StateChangeListener",
    "make_breaker",
]
