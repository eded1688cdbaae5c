"""Response cache (stage 5): a shared HTTP cache with RFC 9111 rules, Vary variants and purges."""

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.purge import CachePurger, add_tags, purge_endpoint
from asgi_guard.stages.cache.singleflight import SingleFlight

__all__ = ["CachePurger", "CachedResponse", "SingleFlight", "add_tags", "purge_endpoint"]
