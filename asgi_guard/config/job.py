"""JobConfig: everything the stack enforces for one route, declared once."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.stages.cache.config import CacheConfig
from asgi_guard.stages.circuit_breaker.config import CircuitBreakerConfig
from asgi_guard.stages.encryption.config import EncryptionConfig
from asgi_guard.stages.events.config import PulsarLabelingConfig
from asgi_guard.stages.idempotency.config import IdempotencyConfig
from asgi_guard.stages.rate_limit.config import RateLimitConfig
from asgi_guard.stages.security.config import SecurityConfig
from asgi_guard.stages.telemetry.config import TracingConfig
from asgi_guard.stages.telemetry.metrics_config import MetricsConfig


class JobConfig(GuardModel):
    """Per-route policy. Defaults are safe for any route: every stage is off until asked for."""

    endpoint_name: str | None = Field(
        default=None,
        description="the route's name in metrics, spans, keys and events (default: the template)",
    )
    endpoint_description: str = Field(default="", description="free text, shown by `asgi-guard routes`")
    required_credits: int = Field(
        default=0, ge=0, description="credits reserved before the handler, committed on success (0 = off)"
    )
    credit_type: str = Field(default="default", description="which balance the credits come from")
    charge_cache_hits: bool = Field(default=False, description="also charge credits when the cache answers")
    rate_limit: RateLimitConfig = RateLimitConfig()
    pooling: PoolingConfig | None = Field(
        default=None, description="backend pool and time-outs for this route (default: GuardSettings.pooling)"
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
            "seconds; past it the handler is cancelled and the answer is a 504"
            " (enforced on routes with credits or a circuit breaker)"
        ),
    )
    redact_fields: list[str] = Field(default=[], description="JSON fields never logged (e.g. secret_value)")
