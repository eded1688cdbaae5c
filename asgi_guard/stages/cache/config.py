"""Response-cache policy models (stage 5). One CacheConfig: the sketch's duplicate is gone."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from asgi_guard.core.model import GuardModel


class CacheAlgo(StrEnum):
    fifo = "fifo"
    lfu = "lfu"
    lifo = "lifo"
    lru = "lru"
    mru = "mru"


class DefaultCacheConfig(GuardModel):
    cache_ttl: int = Field(default=60, ge=1, description="seconds an entry lives (bounded by default_ttl)")


class _EvictionConfig(GuardModel):
    capacity: int = Field(default=1024, ge=1, description="entries the route's namespace holds")
    default_ttl: int = Field(default=300, ge=1, description="upper bound on an entry's life, seconds")


class FIFOCacheConfig(_EvictionConfig):
    """Evicts the entry stored first."""


class LFUCacheConfig(_EvictionConfig):
    """Evicts the entry used least often (ties: the least recently used of them)."""


class LIFOCacheConfig(_EvictionConfig):
    """Evicts the entry stored last."""


class LRUCacheConfig(_EvictionConfig):
    """Evicts the entry used least recently."""


class MRUCacheConfig(_EvictionConfig):
    """Evicts the entry used most recently."""


class CacheConfig(GuardModel):
    enabled: bool = Field(default=False, description="turn stage 5 on for the route")
    default: DefaultCacheConfig = DefaultCacheConfig()
    algo: CacheAlgo = Field(
        default=CacheAlgo.lru,
        description="which entry goes when the route's namespace is full: fifo, lfu, lifo, lru, mru",
    )
    fifo: FIFOCacheConfig = FIFOCacheConfig()
    lfu: LFUCacheConfig = LFUCacheConfig()
    lifo: LIFOCacheConfig = LIFOCacheConfig()
    lru: LRUCacheConfig = LRUCacheConfig()
    mru: MRUCacheConfig = MRUCacheConfig()
    shared: bool = Field(default=False, description="one entry for every user (else one per JWT subject)")
    fail_open: bool = Field(default=True, description="store down: serve uncached (False: answer 503)")
    vary_headers: list[str] = Field(default=[], description="request headers that are part of the key")
    single_flight_timeout: float = Field(
        default=5.0, gt=0, description="seconds a concurrent miss waits for the first one's response"
    )
    max_entry_size: int = Field(default=1_048_576, ge=0, description="larger bodies are not stored")

    @field_validator("vary_headers")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [name.strip().lower() for name in value if name.strip()]

    @property
    def policy(self) -> _EvictionConfig:
        """The section of the algorithm in use (capacity, default_ttl)."""
        section: _EvictionConfig = getattr(self, self.algo.value)
        return section

    @property
    def ttl(self) -> int:
        """An entry's life: `default.cache_ttl`, bounded by the algorithm's `default_ttl`."""
        return min(self.default.cache_ttl, self.policy.default_ttl)
