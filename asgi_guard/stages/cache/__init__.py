"""Response-cache helpers: what a stored response is, how keys are built, single flight."""

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.singleflight import SingleFlight

__all__ = ["CachedResponse", "SingleFlight"]
