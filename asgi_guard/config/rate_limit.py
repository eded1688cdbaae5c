"""Rate-limit policy models (stage 3). Field names follow the original sketch."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ._base import GuardModel


class RateLimitAlgo(str, Enum):
    token_bucket = "token_bucket"
    fixed_window = "fixed_window"
    sliding_window = "sliding_window"
    throttle = "throttle"
    debounce = "debounce"


class TokenBucketConfig(GuardModel):
    """Capacity `rate_limit` tokens, refilled continuously at `refill_rate` per second."""

    rate_limit: int = Field(default=10, ge=1)
    refill_rate: float = Field(default=1.0, gt=0)
    rate_window: int = Field(default=60, ge=1, description="idle state expires after this many seconds")


class FixedWindowConfig(GuardModel):
    limit: int = Field(default=100, ge=1)
    window: int = Field(default=60, ge=1)


class SlidingWindowConfig(GuardModel):
    limit: int = Field(default=100, ge=1)
    window: int = Field(default=60, ge=1)
    precision: str = Field(default="exact", pattern="^(exact|approximate)$")


class ThrottleConfig(GuardModel):
    interval: float = Field(default=1.0, gt=0)


class DebounceConfig(GuardModel):
    interval: float = Field(default=1.0, gt=0)


class RateLimitConfig(GuardModel):
    enabled: bool = False
    algo: RateLimitAlgo = RateLimitAlgo.token_bucket
    token_bucket: TokenBucketConfig = TokenBucketConfig()
    fixed_window: FixedWindowConfig = FixedWindowConfig()
    sliding_window: SlidingWindowConfig = SlidingWindowConfig()
    throttle: ThrottleConfig = ThrottleConfig()
    debounce: DebounceConfig = DebounceConfig()
    shadow: bool = False
    fail_open: bool = False
