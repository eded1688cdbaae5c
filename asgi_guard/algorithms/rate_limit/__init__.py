"""Rate-limit algorithms: a pure reference form, a memory form and a Valkey (Lua) form of each."""

from .memory import MemoryRateLimiter
from .reference import STEPS, ReferenceLimiter
from .spec import Decision, LimitSpec, spec_from_sections, specs_from_config
from .valkey import ValkeyRateLimiter

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
