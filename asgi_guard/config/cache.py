"""Response-cache policy models (stage 5). One CacheConfig: the sketch's duplicate is gone."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ._base import GuardModel


class CacheAlgo(str, Enum):
    fifo = "fifo"
    lfu = "lfu"
    lifo = "lifo"
    lru = "lru"
    mru = "mru"


class DefaultCacheConfig(GuardModel):
    cache_ttl: int = Field(default=60, ge=1)


class _EvictionConfig(GuardModel):
    capacity: int = Field(default=1024, ge=1)
    default_ttl: int = Field(default=300, ge=1)


class FIFOCacheConfig(_EvictionConfig):
    pass


class LFUCacheConfig(_EvictionConfig):
    pass


class LIFOCacheConfig(_EvictionConfig):
    pass


class LRUCacheConfig(_EvictionConfig):
    pass


class MRUCacheConfig(_EvictionConfig):
    pass


class CacheConfig(GuardModel):
    enabled: bool = False
    default: DefaultCacheConfig = DefaultCacheConfig()
    algo: CacheAlgo = CacheAlgo.lru
    fifo: FIFOCacheConfig = FIFOCacheConfig()
    lfu: LFUCacheConfig = LFUCacheConfig()
    lifo: LIFOCacheConfig = LIFOCacheConfig()
    lru: LRUCacheConfig = LRUCacheConfig()
    mru: MRUCacheConfig = MRUCacheConfig()
    shared: bool = False
    fail_open: bool = True
