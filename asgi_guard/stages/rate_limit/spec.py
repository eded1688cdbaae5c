"""A route's limits compiled once from its config: the flat numbers every backend form works from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from asgi_guard.stages.rate_limit.config import RateLimitAlgo, RateLimitConfig, _AlgoSections

# short algorithm codes, shared by the Python forms and rate_limit.lua
TOKEN_BUCKET, FIXED_WINDOW, SLIDING_EXACT, SLIDING_APPROX, THROTTLE, DEBOUNCE = (
    "tb",
    "fw",
    "se",
    "sa",
    "th",
    "db",
)


class Decision(NamedTuple):
    """One limit's answer: `remaining` units after this request; `reset` seconds during which no more
    than `remaining` will be allowed; `retry_after` seconds until a rejected request would pass."""

    allowed: bool
    remaining: int
    reset: float
    retry_after: float


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit: `code` and its parameters `a`, `b`, `c` (see each algorithm), plus what the
    RateLimit-Policy header advertises (`quota` units per `window` seconds)."""

    name: str
    code: str
    a: float
    b: float = 0.0
    c: float = 0.0
    quota: int = 1
    window: int = 1
    summary: str = ""


def _ceil_seconds(value: float) -> int:
    return max(1, math.ceil(value))


def spec_from_sections(section: _AlgoSections) -> LimitSpec:
    """Compile one limit (the primary or an extra one) to a LimitSpec."""
    name = section.policy_name
    algo = section.algo
    if algo is RateLimitAlgo.token_bucket:
        tb = section.token_bucket
        cap, rate = float(tb.rate_limit), float(tb.refill_rate)
        # the state only matters until the bucket would be full again; never expire it earlier
        gc = max(float(tb.rate_window), cap / rate)
        return LimitSpec(
            name,
            TOKEN_BUCKET,
            cap,
            rate,
            gc,
            tb.rate_limit,
            _ceil_seconds(cap / rate),
            f"{tb.rate_limit} burst, {tb.refill_rate:g}/s refill",
        )
    if algo is RateLimitAlgo.fixed_window:
        fw = section.fixed_window
        return LimitSpec(
            name,
            FIXED_WINDOW,
            float(fw.limit),
            float(fw.window),
            0.0,
            fw.limit,
            fw.window,
            f"{fw.limit} per {fw.window} s fixed window",
        )
    if algo is RateLimitAlgo.sliding_window:
        sw = section.sliding_window
        code = SLIDING_EXACT if sw.precision == "exact" else SLIDING_APPROX
        return LimitSpec(
            name,
            code,
            float(sw.limit),
            float(sw.window),
            0.0,
            sw.limit,
            sw.window,
            f"{sw.limit} per {sw.window} s sliding window",
        )
    if algo is RateLimitAlgo.throttle:
        interval = float(section.throttle.interval)
        return LimitSpec(
            name,
            THROTTLE,
            interval,
            0.0,
            0.0,
            1,
            _ceil_seconds(interval),
            f"1 per {interval:g} s after the last accepted request",
        )
    interval = float(section.debounce.interval)
    return LimitSpec(
        name,
        DEBOUNCE,
        interval,
        0.0,
        0.0,
        1,
        _ceil_seconds(interval),
        f"a quiet period of {interval:g} s between attempts",
    )


def specs_from_config(config: RateLimitConfig) -> tuple[LimitSpec, ...]:
    """Every limit of a route, the primary first."""
    return tuple(spec_from_sections(section) for section in config.all_limits())
