"""Rate-limit algorithms: a pure reference form, a memory form and a Valkey (Lua) form of each."""

from asgi_guard.stages.rate_limit.memory import MemoryRateLimiter
from asgi_guard.stages.rate_limit.reference import STEPS, ReferenceLimiter
from asgi_guard.stages.rate_limit.spec import Decision, LimitSpec, spec_from_sections, specs_from_config
from asgi_guard.stages.rate_limit.valkey import ValkeyRateLimiter

__all__ = [
    "STEPS",
    "Decision",
    "LimitSpec",
    "MemoryRateLimiter",
    "ReferenceLimiter",
    "ValkeyRateLimiter",
    "spec_from_sections",
    "specs_from_config",
]
