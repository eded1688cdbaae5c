"""Response-cache policy models (stage 5). One CacheConfig: the sketch's duplicate is gone."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from asgi_guard.core.model import GuardModel
from asgi_guard.core.tiers import TIER_NAME


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
    shared: bool = Field(
        default=False, description="one entry for every user (else one per principal the guard verified)"
    )
    tiers: dict[str, int] = Field(
        default={},
        description="tier name -> seconds a fresh entry filled by that tier lives, bounded by the"
        " algorithm's default_ttl; the route's `tier` selector picks the tier, and a tier not listed"
        " gets the default tier's entry, else the route TTL. A `shared` route uses the lowest of"
        " these and the route TTL for every entry (docs/policies.md)",
    )
    methods: list[str] = Field(
        default=["GET", "HEAD"],
        description="methods answered from the cache (HEAD uses GET's entry); other methods pass, and"
        " unsafe ones (POST, PUT, PATCH, DELETE) invalidate the path's entries (RFC 9111 §4.4)",
    )
    store_despite: list[Literal["no-store", "private", "set-cookie"]] = Field(
        default=[],
        description="response headers that normally forbid storing, which this route overrides"
        " (set-cookie: stored without its Set-Cookie)",
    )
    credential_cookies: list[str] | None = Field(
        default=None,
        description="cookies that are credentials (None: any Cookie; []: none). A request with one, or"
        " with Authorization, that the guard did not verify bypasses shared entries (RFC 9111 §3.5)",
    )
    allowed_hosts: list[str] = Field(
        default=["*"],
        description="Host values cached (Starlette TrustedHostMiddleware patterns: 'example.com',"
        " '*.example.com', '*'); other hosts bypass the cache",
    )
    trust_forwarded_host: bool = Field(
        default=False,
        description="key on X-Forwarded-Host when the peer is in GuardSettings.trusted_proxies",
    )
    normalize_query: bool = Field(default=False, description="sort query parameters before keying")
    ignore_query_params: list[str] = Field(
        default=[], description="query parameters left out of the key ('utm_*': a prefix)"
    )
    max_stale: int = Field(
        default=60,
        ge=0,
        description="seconds an entry is kept past its freshness for the response's"
        " stale-while-revalidate / stale-if-error (RFC 5861), at most",
    )
    cache_streams: bool = Field(
        default=False,
        description="store and single-flight streamed responses (text/event-stream, no Content-Length)",
    )
    etag: bool = Field(
        default=False, description="add a strong ETag (body digest) to stored entries that lack one"
    )
    tag_header: str = Field(
        default="cache-tag", description="response header listing the entry's purge tags (not stored)"
    )
    max_variants: int = Field(default=16, ge=1, description="Vary variants kept per entry")
    max_entries_per_owner: int | None = Field(
        default=None,
        ge=1,
        description="embedded backend: entries one client (the principal whose request filled them:"
        " JWT subject, else client IP) may hold in the route's namespace; past it the client loses its"
        " own entry. None: no bound of its own (the namespace's capacity). Either way, a full namespace"
        " takes room from the client holding the most entries, so one client's flood of distinct URLs"
        " evicts its own entries, never another's smaller set",
    )
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

    @field_validator("tiers")
    @classmethod
    def _check_tiers(cls, value: dict[str, int]) -> dict[str, int]:
        for tier, seconds in value.items():
            if not re.match(TIER_NAME, tier):
                raise ValueError(f"cache.tiers: {tier!r} is not a tier name (letters, digits, _ -)")
            if isinstance(seconds, bool) or seconds < 1:
                raise ValueError(f"cache.tiers.{tier}: a TTL is whole seconds, at least 1")
        return value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [name.strip().upper() for name in value if name.strip()]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [name.strip().lower() for name in value if name.strip()]

    @field_validator("tag_header")
    @classmethod
    def _tag_header(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def policy(self) -> _EvictionConfig:
        """The section of the algorithm in use (capacity, default_ttl)."""
        section: _EvictionConfig = getattr(self, self.algo.value)
        return section

    @property
    def ttl(self) -> int:
        """An entry's life: `default.cache_ttl`, bounded by the algorithm's `default_ttl`."""
        return min(self.default.cache_ttl, self.policy.default_ttl)

    @property
    def tier_ttls(self) -> dict[str, int]:
        """Each listed tier's entry life (`tiers`), bounded by the algorithm's `default_ttl`."""
        bound = self.policy.default_ttl
        return {tier: min(seconds, bound) for tier, seconds in self.tiers.items()}

    @property
    def shared_ttl(self) -> int:
        """A shared entry's life on a tiered route: the lowest of the route TTL and every tier's,
        so no caller is served an entry older than its own tier allows."""
        return min((self.ttl, *self.tier_ttls.values()))
