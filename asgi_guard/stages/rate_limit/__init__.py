"""Rate-limit algorithms: a pure reference form, a memory form and a Valkey (Lua) form of each.

The names below are imported on first use (`import asgi_guard` loads none of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from asgi_guard.stages.rate_limit.memory import MemoryRateLimiter
    from asgi_guard.stages.rate_limit.reference import STEPS, ReferenceLimiter
    from asgi_guard.stages.rate_limit.spec import Decision, LimitSpec, spec_from_sections, specs_from_config
    from asgi_guard.stages.rate_limit.store import RateLimitStore
    from asgi_guard.stages.rate_limit.valkey import ValkeyRateLimiter
    from asgi_guard.state import Backend


def rate_limiter(
    backend: Backend, specs: Sequence[LimitSpec], timeout: float | None = None
) -> RateLimitStore:
    """One route's limits in the form that matches `backend` (chosen once, at build time)."""
    from asgi_guard.stages.rate_limit.memory import MemoryRateLimiter
    from asgi_guard.stages.rate_limit.valkey import ValkeyRateLimiter
    from asgi_guard.state import choose

    return choose(
        backend,
        memory=lambda b: MemoryRateLimiter(b.namespace("rate_limit"), b.clock, specs),
        valkey=lambda b: ValkeyRateLimiter(b, specs, timeout),
        concern="rate limiting",
    )


__getattr__ = lazy_exports(
    __name__,
    {
        "STEPS": "reference",
        "Decision": "spec",
        "LimitSpec": "spec",
        "MemoryRateLimiter": "memory",
        "RateLimitStore": "store",
        "ReferenceLimiter": "reference",
        "ValkeyRateLimiter": "valkey",
        "spec_from_sections": "spec",
        "specs_from_config": "spec",
    },
)

__all__ = [
    "STEPS",
    "Decision",
    "LimitSpec",
    "MemoryRateLimiter",
    "RateLimitStore",
    "ReferenceLimiter",
    "ValkeyRateLimiter",
    "rate_limiter",
    "spec_from_sections",
    "specs_from_config",
]
