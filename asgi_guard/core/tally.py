"""In-process decision counts for the operator console: bounded, cheap, and only when asked for.

`GuardRuntime.tally` is None unless the console is on (`GuardSettings.console_path`, or
`asgi_guard.console.console_app(runtime)` called before the app serves). The telemetry stage feeds it
once per request, after the response, with the request's final decisions (`ctx.decisions`): a
reservation later committed counts once, as committed.

Memory is bounded whatever the traffic: at most `MAX_KEYS` distinct (route, stage, outcome, reason)
counters (later newcomers are counted under `"__other__"`), and the rate-limited keys are kept in a
space-saving top-K sketch (Metwally et al., 2005) of `top_k` slots.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext

MAX_KEYS = 512
OTHER = "__other__"
_CACHE_HITS = frozenset({"hit", "coalesced"})
_LIMITED = frozenset({"rate_limited", "shadow_rejected"})  # a rate-limit "no" (enforced or shadow)


class SpaceSaving:
    """Top-K heavy hitters in `k` slots: each tracked item has a count that overestimates its true
    count by at most its `error` (the count of the item it evicted). Exact while there are at most
    `k` distinct items."""

    __slots__ = ("counts", "errors", "k")

    def __init__(self, k: int = 16) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, item: str) -> None:
        counts = self.counts
        if item in counts:
            counts[item] += 1
        elif len(counts) < self.k:
            counts[item] = 1
            self.errors[item] = 0
        else:  # O(k), and only for a newcomer when every slot is taken (k is small)
            victim = min(counts, key=counts.__getitem__)
            floor = counts.pop(victim)
            del self.errors[victim]
            counts[item] = floor + 1
            self.errors[item] = floor

    def top(self, n: int | None = None) -> list[tuple[str, int, int]]:
        """`(item, count, error)` by count, largest first."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(item, count, self.errors[item]) for item, count in ranked[: n or self.k]]


class DecisionTally:
    """Counts of the requests the guard saw, their statuses and every stage's final decision."""

    __slots__ = ("_classes", "_max_keys", "cache", "decisions", "limited", "requests", "started")

    def __init__(self, top_k: int = 16, max_keys: int = MAX_KEYS) -> None:
        self.started = time.time()
        self._max_keys = max_keys
        self.requests = 0
        self._classes = [0] * 10  # responses by status // 100
        # (route label, stage, outcome, reason or "") -> count
        self.decisions: dict[tuple[str, str, str, str], int] = {}
        self.cache: dict[str, list[int]] = {}  # route label -> [hits, misses]
        self.limited = SpaceSaving(top_k)

    def record(self, ctx: GuardContext, status: int) -> None:
        """Count one finished request (called once per request by the telemetry stage)."""
        self.requests += 1
        self._classes[min(status // 100, 9)] += 1
        label = ctx.route.label
        counts = self.decisions
        for name, decision in ctx.decisions.items():
            key = (label, name, decision.outcome, decision.reason or "")
            found = counts.get(key)
            if found is not None:
                counts[key] = found + 1
            elif len(counts) < self._max_keys:
                counts[key] = 1
            else:  # reasons come from a fixed set in the stages' code: this stays bounded
                other = (OTHER, name, decision.outcome, decision.reason or "")
                counts[other] = counts.get(other, 0) + 1
            if name == "cache":
                self._cache(label, decision.reason)
            elif decision.reason in _LIMITED and name == "rate_limit":
                resource = ctx.resource_id
                self.limited.add(f"{label} {ctx.principal_key}" + (f" {resource}" if resource else ""))

    def _cache(self, label: str, reason: str | None) -> None:
        pair = self.cache.get(label)
        if pair is None:
            if len(self.cache) >= self._max_keys:
                return
            pair = self.cache[label] = [0, 0]
        if reason in _CACHE_HITS:
            pair[0] += 1
        elif reason == "miss":
            pair[1] += 1

    @property
    def statuses(self) -> dict[str, int]:
        """Responses by status class: {"2xx": n, ...} (classes seen only)."""
        return {f"{i}xx": n for i, n in enumerate(self._classes) if n}

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: totals, decisions by stage and reason, top limited keys, cache."""
        by_stage: dict[tuple[str, str, str], int] = {}
        for (_, stage, outcome, reason), count in self.decisions.items():
            key = (stage, outcome, reason)
            by_stage[key] = by_stage.get(key, 0) + count
        hits = sum(pair[0] for pair in self.cache.values())
        misses = sum(pair[1] for pair in self.cache.values())
        return {
            "since": self.started,
            "requests": self.requests,
            "statuses": self.statuses,
            "decisions": [
                {"stage": s, "outcome": o, "reason": r or None, "count": c}
                for (s, o, r), c in sorted(by_stage.items(), key=lambda kv: (kv[0][0], -kv[1]))
            ],
            "rejected_by_route": _per_route_rejections(self.decisions),
            "top_limited": [{"key": k, "count": c, "error": e} for k, c, e in self.limited.top()],
            "cache": {
                "hits": hits,
                "misses": misses,
                "ratio": round(hits / (hits + misses), 4) if hits + misses else None,
                "by_route": {label: {"hits": h, "misses": m} for label, (h, m) in sorted(self.cache.items())},
            },
        }


def _per_route_rejections(counts: dict[tuple[str, str, str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (label, _, outcome, _), count in counts.items():
        if outcome == "rejected":
            out[label] = out.get(label, 0) + count
    return out
