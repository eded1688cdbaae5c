"""JobConfig: everything the stack enforces for one route, declared once."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from asgi_guard.core.cost import CostConfig
from asgi_guard.core.exemptions import ExemptConfig
from asgi_guard.core.model import GuardModel
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.core.tiers import TierConfig
from asgi_guard.stages.cache.config import CacheConfig
from asgi_guard.stages.circuit_breaker.config import CircuitBreakerConfig
from asgi_guard.stages.credits.config import CreditsConfig
from asgi_guard.stages.encryption.config import EncryptionConfig
from asgi_guard.stages.events.config import PulsarLabelingConfig
from asgi_guard.stages.idempotency.config import IdempotencyConfig
from asgi_guard.stages.rate_limit.config import RateLimitConfig
from asgi_guard.stages.security.config import SecurityConfig
from asgi_guard.stages.telemetry.config import TelemetryConfig, TracingConfig
from asgi_guard.stages.telemetry.metrics_config import MetricsConfig


class JobConfig(GuardModel):
    """Per-route policy. Defaults are safe for any route: every stage is off until asked for.

    The user-facing surface: each stage is handed only its own section (`Stage.section` names the
    attribute), never the whole JobConfig. Sections made of loose fields are composed here:
    `credits` (from `required_credits`, `credit_type`, `charge_cache_hits`) and `telemetry`
    (from `tracing`, `metrics`, `redact_fields`).
    """

    endpoint_name: str | None = Field(
        default=None,
        description="the route's name in metrics, spans, keys and events (default: the template)",
    )
    endpoint_description: str = Field(default="", description="free text, shown by `asgi-guard routes`")
    required_credits: int = Field(
        default=0, ge=0, description="credits reserved before the handler, committed on success (0 = off)"
    )
    credit_type: str = Field(default="default", description="which balance the credits come from")
    tier: TierConfig | None = Field(
        default=None,
        description="sorts requests into tiers: claim, role, scope, API key, hook (docs/policies.md)",
    )
    exempt: ExemptConfig | None = Field(
        default=None, description="who skips rate limiting and/or credits on this route (docs/policies.md)"
    )
    credits_price: CostConfig | None = Field(
        default=None,
        description=(
            "the price from the request (body field, parameter, upstream header, hook) instead of"
            " required_credits; it is the reservation, the most a request can be charged (docs/policies.md)"
        ),
    )
    charge_cache_hits: bool = Field(
        default=False,
        description="also charge credits when the cache answers (credits then run before the cache)",
    )
    rate_limit: RateLimitConfig = RateLimitConfig()
    pooling: PoolingConfig | None = Field(
        default=None,
        description=(
            "this route's backend time-out: its socket_timeout bounds every store call of the route"
            " (the pool itself, max_connections and connect_timeout, is app-wide: GuardSettings.pooling)"
        ),
    )
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    cache: CacheConfig = CacheConfig()
    security: SecurityConfig = SecurityConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    tracing: TracingConfig = TracingConfig()
    metrics: MetricsConfig = MetricsConfig()
    pulsar_labeling: PulsarLabelingConfig = PulsarLabelingConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    resource_id_field: str = Field(
        default="resource_id", description="path parameter, else JSON body field, that names the resource"
    )
    resource_id_from_body: bool = Field(
        default=False, description="read the resource id from the JSON body when no path parameter has it"
    )
    max_body_size: int | None = Field(default=None, ge=0, description="overrides GuardSettings.max_body_size")
    handler_timeout: float | None = Field(
        default=None,
        gt=0,
        description=(
            "seconds the handler has to complete its response; past it the handler is cancelled and"
            " the answer is a 504. Work after the response (a BackgroundTask) is not timed"
        ),
    )
    redact_fields: list[str] = Field(default=[], description="JSON fields never logged (e.g. secret_value)")

    @model_validator(mode="after")
    def _pool_is_app_wide(self) -> JobConfig:
        """A route cannot have its own pool: say so rather than ignore the setting."""
        if self.pooling is not None:
            own = self.pooling.model_fields_set - {"socket_timeout"}  # the client is one per app
            if own:
                raise ValueError(
                    f"pooling.{sorted(own)[0]} is app-wide: set it in GuardSettings.pooling"
                    " (a route's pooling sets only socket_timeout)"
                )
        return self

    @property
    def credits(self) -> CreditsConfig:
        """The credits stage's section (composed from the loose fields above)."""
        return CreditsConfig(
            required_credits=self.required_credits,
            credit_type=self.credit_type,
            charge_cache_hits=self.charge_cache_hits,
            price=self.credits_price,
        )

    @property
    def telemetry(self) -> TelemetryConfig:
        """The telemetry stages' section (server span, metrics, access log, job span)."""
        return TelemetryConfig(
            tracing=self.tracing, metrics=self.metrics, redact_fields=tuple(self.redact_fields)
        )

    @model_validator(mode="after")
    def _tiers_need_a_selector(self) -> JobConfig:
        tiered = (
            self.rate_limit.tiers
            or self.cache.tiers
            or (self.credits_price is not None and self.credits_price.source == "tier")
        )
        if tiered and self.tier is None:
            raise ValueError("tiers need the route's tier selector: tier = {by = ..., default = ...}")
        return self

    @field_validator("credits_price", mode="before")
    @classmethod
    def _price_shorthand(cls, value: object) -> object:
        return CostConfig.coerce(value)
