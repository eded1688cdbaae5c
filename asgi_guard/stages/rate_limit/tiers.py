"""Rate limits per tier: `tiers = {free = "60/min", pro = "600/min"}`, or a full limit set per tier.

A shorthand `"N/UNIT"` (UNIT: s, sec, second, m, min, minute, h, hour, d, day, optionally with a count:
`"100/10s"`) is N units per that period in the route's own algorithm: a token bucket of capacity N
refilled at N per period, or a fixed/sliding window of N per period (throttle and debounce have no
quota, so they take only the full form). The full form is a limit set like the route's own
(`algo`, its section, `name`, `limits`).

Policy names carry the tier, so the RateLimit-Policy header and the metric labels say which tier
decided: a tier's primary limit is named after the tier (`"pro"`, or `"pro.NAME"` when it has a
name), its extra limits `"pro.NAME"`. Each tier counts in keys of its own; a principal whose tier
changes starts afresh in the new one.
"""

from __future__ import annotations

import re
from typing import Any

from asgi_guard.stages.rate_limit.config import LimitConfig, RateLimitAlgo, _AlgoSections

_SHORTHAND = re.compile(r"^\s*(\d{1,12})\s*/\s*(\d{1,9})?\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip


def parse_shorthand(text: str) -> tuple[int, int]:
    """`"60/min"` -> (60, 60): units and the period in seconds (ValueError when malformed)."""
    match = _SHORTHAND.match(text.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"tier limit {text!r}: expected 'N/UNIT' such as '60/min' or '100/10s'")
    count, times, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if count < 1 or times < 1:
        raise ValueError(f"tier limit {text!r}: the quota and the period must be positive")
    return count, times * _UNITS[unit]


def shorthand_section(tier: str, text: str, algo: RateLimitAlgo) -> LimitConfig:
    """One shorthand as a limit in the route's algorithm, named after the tier."""
    count, period = parse_shorthand(text)
    if algo is RateLimitAlgo.token_bucket:
        bucket = {"rate_limit": count, "refill_rate": count / period, "rate_window": period}
        return LimitConfig(name=tier, algo=algo, token_bucket=bucket)
    if algo is RateLimitAlgo.fixed_window:
        return LimitConfig(name=tier, algo=algo, fixed_window={"limit": count, "window": period})
    if algo is RateLimitAlgo.sliding_window:
        return LimitConfig(name=tier, algo=algo, sliding_window={"limit": count, "window": period})
    raise ValueError(f"tier {tier!r}: a shorthand needs token_bucket or a window algorithm, not {algo.value}")


def full_sections(tier: str, limits: _AlgoSections, extra: list[LimitConfig]) -> list[LimitConfig]:
    """A full tier limit set, renamed into the tier."""
    fields: dict[str, Any] = {k: getattr(limits, k) for k in LimitConfig.model_fields}
    primary = LimitConfig(**{**fields, "name": tier if limits.name is None else f"{tier}.{limits.name}"})
    return [primary, *(e.model_copy(update={"name": f"{tier}.{e.policy_name}"}) for e in extra)]
