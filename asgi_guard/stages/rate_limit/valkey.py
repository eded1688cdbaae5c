"""Valkey form: all of a route's limits in one atomic rate_limit.lua call (one round trip).

Keys are `prefix:rl:{identity}:policy:code`: every key of one decision carries the same hash tag,
so the script runs on one cluster node. Time is the server's (`TIME`), the one clock every process
shares; tests may pass `now` explicitly, or give the backend a clock, to compare with the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.stages.rate_limit.spec import SLIDING_EXACT, Decision, LimitSpec
from asgi_guard.state.valkey import ScriptCall, ValkeyBackend, lua

SCRIPT = lua(__package__, "rate_limit", retry_safe=True)  # a lost reply re-run counts twice: stricter
GC_SLACK_MS = 1000


class ValkeyRateLimiter:
    """One route's limits on Valkey; `await check(identity)` decides one request."""

    __slots__ = ("_backend", "_suffixes", "_tail", "_timeout")

    def __init__(
        self,
        backend: ValkeyBackend,
        specs: Sequence[LimitSpec],
        timeout: float | None = None,
        gc_slack_ms: int = GC_SLACK_MS,
    ) -> None:
        self._backend = backend
        self._timeout = timeout
        suffixes: list[tuple[str, ...]] = []
        tail: list[str] = [str(gc_slack_ms), str(len(specs))]
        for spec in specs:
            base = (spec.name, spec.code)
            suffixes.append(base)
            if spec.code == SLIDING_EXACT:
                suffixes.append((*base, "seq"))
            tail += [spec.code, repr(spec.a), repr(spec.b), repr(spec.c)]
        self._suffixes = tuple(suffixes)
        self._tail = tail

    def keys(self, identity: str) -> list[str]:
        key = self._backend.key
        return [key("rl", identity, *suffix) for suffix in self._suffixes]

    async def decide(self, identity: str, cost: int = 1) -> list[Decision]:
        return await self.check(identity, cost=cost)

    async def check(self, identity: str, now: float | None = None, cost: int = 1) -> list[Decision]:
        """Decide for a request of `cost` units (all or nothing); raises BackendUnavailable when
        Valkey fails or is slower than the bound."""
        args = [self._backend.script_now() if now is None else repr(now), str(cost), *self._tail]
        raw = await self._backend.run(SCRIPT, self.keys(identity), args, self._timeout)
        return _decisions(raw)

    async def check_with(self, identity: str, call: ScriptCall, cost: int = 1) -> tuple[list[Decision], Any]:
        """Decide, and run another script of the request (`call`) in the same round trip.

        Returns the decisions and `call`'s answer, or a BackendUnavailable in its place when that
        call alone failed; raises BackendUnavailable when the limit itself got no answer.
        """
        args = (self._backend.script_now(), str(cost), *self._tail)
        raw, other = await self._backend.run_many(((SCRIPT, self.keys(identity), args), call), self._timeout)
        if isinstance(raw, BackendUnavailable):
            raise raw
        return _decisions(raw), other


def _decisions(raw: list[Any]) -> list[Decision]:
    return [
        Decision(raw[i] == 1, int(raw[i + 1]), float(raw[i + 2]), float(raw[i + 3]))
        for i in range(0, len(raw), 4)
    ]
