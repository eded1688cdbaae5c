"""Response-cache helpers: what a stored response is, how keys are built, single flight."""

from .response import CachedResponse
from .singleflight import SingleFlight

__all__ = ["CachedResponse", "SingleFlight"]
