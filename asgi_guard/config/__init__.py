"""Config models, one module per concern."""

from asgi_guard.config.job import JobConfig
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.core.settings import GuardSettings
from asgi_guard.stages.cache.config import (
    CacheAlgo,
    CacheConfig,
    DefaultCacheConfig,
    FIFOCacheConfig,
    LFUCacheConfig,
    LIFOCacheConfig,
    LRUCacheConfig,
    MRUCacheConfig,
)
from asgi_guard.stages.circuit_breaker.config import CircuitBreakerConfig
from asgi_guard.stages.credits.config import CreditsConfig
from asgi_guard.stages.encryption.config import EncryptionConfig
from asgi_guard.stages.events.config import PulsarLabelingConfig
from asgi_guard.stages.idempotency.config import IdempotencyConfig
from asgi_guard.stages.rate_limit.config import (
    DebounceConfig,
    FixedWindowConfig,
    LimitConfig,
    RateLimitAlgo,
    RateLimitConfig,
    SlidingWindowConfig,
    ThrottleConfig,
    TokenBucketConfig,
)
from asgi_guard.stages.security.config import SecurityConfig
from asgi_guard.stages.telemetry.config import TelemetryConfig, TracingConfig
from asgi_guard.stages.telemetry.metrics_config import MetricsConfig

__all__ = [
    "CacheAlgo",
    "CacheConfig",
    "CircuitBreakerConfig",
    "CreditsConfig",
    "DebounceConfig",
    "DefaultCacheConfig",
    "EncryptionConfig",
    "FIFOCacheConfig",
    "FixedWindowConfig",
    "GuardSettings",
    "IdempotencyConfig",
    "JobConfig",
    "LFUCacheConfig",
    "LIFOCacheConfig",
    "LRUCacheConfig",
    "LimitConfig",
    "MRUCacheConfig",
    "MetricsConfig",
    "PoolingConfig",
    "PulsarLabelingConfig",
    "RateLimitAlgo",
    "RateLimitConfig",
    "SecurityConfig",
    "SlidingWindowConfig",
    "TelemetryConfig",
    "ThrottleConfig",
    "TokenBucketConfig",
    "TracingConfig",
]
