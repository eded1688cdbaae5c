"""The credits stage's section, composed from JobConfig's own fields (their names are pinned API)."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.cost import CostConfig
from asgi_guard.core.model import GuardModel


class CreditsConfig(GuardModel):
    """What the credits stage reads: `JobConfig.credits` builds it from `required_credits`,
    `credit_type`, `charge_cache_hits` and `credits_price` (declare those on the JobConfig, as before)."""

    required_credits: int = Field(
        default=0, ge=0, description="credits reserved before the handler, committed on success (0 = off)"
    )
    credit_type: str = Field(default="default", description="which balance the credits come from")
    charge_cache_hits: bool = Field(
        default=False,
        description=(
            "charge a response the cache answers too: the credits stage then runs before the cache,"
            " so a hit is reserved and committed like a handler response (default: hits are free)"
        ),
    )
    price: CostConfig | None = Field(
        default=None, description="JobConfig.credits_price: the price read from the request (the reservation)"
    )
