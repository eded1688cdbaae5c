"""Per-route circuit breakers (stage 7): pybreaker's state machine, in-process or shared via Valkey."""

from __future__ import annotations

from asgi_guard.stages.circuit_breaker.listener import StateChangeListener
from asgi_guard.stages.circuit_breaker.memory import LocalBreaker
from asgi_guard.stages.circuit_breaker.store import ADMIT_CLOSED, STATE_CODES, Admission, Breaker
from asgi_guard.stages.circuit_breaker.valkey import SharedBreaker
from asgi_guard.state import Backend, MemoryBackend, ValkeyBackend


def make_breaker(backend: Backend, name: str, threshold: int, timeout: float, lease: float) -> Breaker:
    """The breaker form that matches `backend` (chosen once per route)."""
    listener = StateChangeListener(name)
    if isinstance(backend, ValkeyBackend):
        return SharedBreaker(backend, name, threshold, timeout, lease, listener)
    if isinstance(backend, MemoryBackend):
        return LocalBreaker(name, threshold, timeout, listener)
    raise TypeError(f"no circuit breaker for backend {type(backend).__name__}")


__all__ = [
    "ADMIT_CLOSED",
    "STATE_CODES",
    "Admission",
    "Breaker",
    "LocalBreaker",
    "SharedBreaker",
    "StateChangeListener",
    "make_breaker",
]
