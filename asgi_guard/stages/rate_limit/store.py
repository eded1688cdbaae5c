"""The rate-limit store contract both forms keep (memory.py, valkey.py; meaning: reference.py)."""

from __future__ import annotations

from typing import Protocol

from asgi_guard.stages.rate_limit.spec import Decision


class RateLimitStore(Protocol):
    """One route's limits on one backend.

    `decide(identity, cost)` decides one request against every limit: all must admit it, a rejected
    request consumes none of them (a debounce limit records every attempt). The memory form also
    answers without awaiting (`MemoryRateLimiter.check`), which the stage's hot path uses; both
    equal `reference.ReferenceLimiter` (tests/rate_limit/test_rl_properties.py).
    """

    async def decide(self, identity: str, cost: int = 1) -> list[Decision]:
        """One decision per limit, in the route's order, for a request of `cost` units (all or
        nothing); raises BackendUnavailable when Valkey fails."""
