"""Config models, one module per concern."""

from .cache import (
    CacheAlgo,
    CacheConfig,
    DefaultCacheConfig,
    FIFOCacheConfig,
    LFUCacheConfig,
    LIFOCacheConfig,
    LRUCacheConfig,
    MRUCacheConfig,
)
from .circuit_breaker import CircuitBreakerConfig
from .encryption import EncryptionConfig
from .idempotency import IdempotencyConfig
from .job import JobConfig
from .metrics import MetricsConfig
from .pooling import PoolingConfig
from .pulsar import PulsarLabelingConfig
from .rate_limit import (
    DebounceConfig,
    FixedWindowConfig,
    LimitConfig,
    RateLimitAlgo,
    RateLimitConfig,
    SlidingWindowConfig,
    ThrottleConfig,
    TokenBucketConfig,
)
from .security import SecurityConfig
from .settings import GuardSettings
from .tracing import TracingConfig

__all__ = [
    "CacheAlgo",
    "CacheConfig",
    "CircuitBreakerConfig",
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
    "ThrottleConfig",
    "TokenBucketConfig",
    "TracingConfig",
]
