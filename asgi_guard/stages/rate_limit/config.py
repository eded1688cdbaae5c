"""Rate-limit policy models (stage 3). Field names follow the original sketch; the rest is additive."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from asgi_guard.core.cost import CostConfig
from asgi_guard.core.model import GuardModel

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_POLICY_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
KEY_PARTS = frozenset({"user", "ip", "route", "global", "resource"})
DEFAULT_KEY_BY = ("route", "user", "resource")


class RateLimitAlgo(StrEnum):
    token_bucket = "token_bucket"
    fixed_window = "fixed_window"
    sliding_window = "sliding_window"
    throttle = "throttle"
    debounce = "debounce"


class TokenBucketConfig(GuardModel):
    """Capacity `rate_limit` tokens, refilled continuously at `refill_rate` per second."""

    rate_limit: int = Field(default=10, ge=1, description="bucket capacity (tokens); the bucket starts full")
    refill_rate: float = Field(default=1.0, gt=0, description="tokens added per second, continuously")
    rate_window: int = Field(default=60, ge=1, description="idle state expires after this many seconds")


class FixedWindowConfig(GuardModel):
    limit: int = Field(default=100, ge=1, description="requests allowed per window")
    window: int = Field(default=60, ge=1, description="window length in seconds")


class SlidingWindowConfig(GuardModel):
    """`precision="exact"` (default) keeps a log of timestamps: exact, O(limit) memory per key.
    `"approximate"` is the two-window weighted counter: O(1), may admit up to 2x `limit` in the worst case."""

    limit: int = Field(default=100, ge=1, description="requests allowed per window")
    window: int = Field(default=60, ge=1, description="window length in seconds")
    precision: str = Field(
        default="exact",
        pattern="^(exact|approximate)$",
        description='"exact" (a log of timestamps) or "approximate" (two-window weighted counter)',
    )


class ThrottleConfig(GuardModel):
    interval: float = Field(default=1.0, gt=0, description="seconds")


class DebounceConfig(GuardModel):
    interval: float = Field(default=1.0, gt=0, description="seconds")


class _AlgoSections(GuardModel):
    """The algorithm choice and its five sections, shared by the primary limit and the extra ones."""

    algo: RateLimitAlgo = Field(
        default=RateLimitAlgo.token_bucket,
        description="token_bucket, fixed_window, sliding_window, throttle or debounce",
    )
    token_bucket: TokenBucketConfig = TokenBucketConfig()
    fixed_window: FixedWindowConfig = FixedWindowConfig()
    sliding_window: SlidingWindowConfig = SlidingWindowConfig()
    throttle: ThrottleConfig = ThrottleConfig()
    debounce: DebounceConfig = DebounceConfig()
    name: str | None = Field(
        default=None,
        pattern=_POLICY_NAME,
        description="policy name in headers, problem bodies and metrics (default: the algo name)",
    )

    @property
    def policy_name(self) -> str:
        return self.name or self.algo.value


class LimitConfig(_AlgoSections):
    """One more limit on the same route (say 1,000 a day beside 10 a second); all must pass."""


class TierLimits(_AlgoSections):
    """A tier's full limit set (the route's shape): the primary limit and extra ones."""

    limits: list[LimitConfig] = Field(default=[], description="extra limits of this tier")


class RateLimitConfig(_AlgoSections):
    enabled: bool = Field(default=False, description="turn stage 3 on for the route")
    shadow: bool = Field(default=False, description="decide, count and add headers, but never reject")
    fail_open: bool = Field(default=False, description="let requests through when the backend is down")
    key_by: list[str] = Field(
        default=list(DEFAULT_KEY_BY),
        description="what the limit counts by: user, ip, route, global, resource, header:NAME",
    )
    limits: list[LimitConfig] = Field(default=[], description="extra limits; a request must pass all")
    ipv6_prefix: int = Field(
        default=64,
        ge=1,
        le=128,
        description="an anonymous IPv6 client counts by this prefix (a /64 is one subscriber, RFC 6177;"
        " rotating addresses inside it gets no fresh budget); 128: by the exact address",
    )
    headers: bool = Field(default=True, description="send RateLimit-Policy / RateLimit on responses")
    tiers: dict[str, str | TierLimits] = Field(
        default={},
        description=(
            'limits per tier, "60/min" or a full limit set; the tier comes from the route\'s `tier`'
            " selector, and a tier not listed gets the limits above (docs/policies.md)"
        ),
    )
    legacy_headers: bool = Field(
        default=False, description="also send X-RateLimit-Limit/Remaining/Reset (slowapi/Kong style)"
    )
    cost: CostConfig = Field(
        default=CostConfig(),
        description="units a request takes from token bucket and window limits (default 1; docs/policies.md)",
    )

    @field_validator("cost", mode="before")
    @classmethod
    def _cost_shorthand(cls, value: object) -> object:
        return CostConfig.coerce(value)

    @field_validator("key_by")
    @classmethod
    def _check_key_by(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("key_by needs at least one part")
        out = []
        for part in value:
            if part.startswith("header:"):
                name = part[7:]
                if not _HEADER_NAME.match(name):
                    raise ValueError(f"key_by: {part!r} does not name a valid header")
                out.append("header:" + name.lower())
            elif part in KEY_PARTS:
                out.append(part)
            else:
                raise ValueError(
                    f"key_by: unknown part {part!r} (user, ip, route, global, resource, header:NAME)"
                )
        return out

    @model_validator(mode="after")
    def _unique_names(self) -> RateLimitConfig:
        names = [limit.policy_name for limit in self.all_limits()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rate_limit: policy names must be unique per route, repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _check_tiers(self) -> RateLimitConfig:
        for tier in self.tiers:
            if not re.match(r"^[A-Za-z0-9_\-]{1,32}$", tier):
                raise ValueError(f"rate_limit.tiers: {tier!r} is not a tier name (letters, digits, _ -)")
            names = [s.policy_name for s in self.tier_limits(tier)]
            if len(set(names)) != len(names):
                raise ValueError(f"rate_limit.tiers.{tier}: policy names must be unique")
        return self

    def tier_limits(self, tier: str) -> list[LimitConfig]:
        """A listed tier's limits, named into the tier (rate_limit/tiers.py explains the names)."""
        from asgi_guard.stages.rate_limit.tiers import full_sections, shorthand_section

        value = self.tiers[tier]
        if isinstance(value, str):
            return [shorthand_section(tier, value, self.algo)]
        return full_sections(tier, value, value.limits)

    def all_limits(self) -> list[_AlgoSections]:
        """The primary limit, then the extra ones."""
        return [self, *self.limits]
