"""One pure-ASGI middleware per stage, in stack order (outermost first)."""

from .base import Stage
from .cache import CacheMiddleware
from .circuit_breaker import CircuitBreakerMiddleware
from .credits import CreditsMiddleware
from .encryption import EncryptionMiddleware
from .events import EventsMiddleware
from .idempotency import IdempotencyMiddleware
from .job import JobMiddleware
from .rate_limit import RateLimitMiddleware
from .security import SecurityMiddleware
from .telemetry import TelemetryMiddleware

STAGES: tuple[type[Stage], ...] = (
    TelemetryMiddleware,
    SecurityMiddleware,
    RateLimitMiddleware,
    IdempotencyMiddleware,
    CacheMiddleware,
    CreditsMiddleware,
    CircuitBreakerMiddleware,
    JobMiddleware,
    EventsMiddleware,
    EncryptionMiddleware,
)

__all__ = [
    "STAGES",
    "CacheMiddleware",
    "CircuitBreakerMiddleware",
    "CreditsMiddleware",
    "EncryptionMiddleware",
    "EventsMiddleware",
    "IdempotencyMiddleware",
    "JobMiddleware",
    "RateLimitMiddleware",
    "SecurityMiddleware",
    "Stage",
    "TelemetryMiddleware",
]
