"""Shared-state backends: embedded memory (default) and Valkey, and the one place a store form is chosen.

Every stateful concern (rate limits, cache, credits, idempotency, breaker, TOTP) states its store as
one Protocol in `stages/<name>/store.py` with a memory and a Valkey form; `choose` picks the form by
the backend's kind, the way Kong picks `policies[conf.policy]` and `limits` picks storage by URI
scheme. Nothing outside this package asks which class a backend is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from asgi_guard.core.errors import ConfigError
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.core.settings import GuardSettings
from asgi_guard.state.base import Backend
from asgi_guard.state.keys import hash_tag, key_part
from asgi_guard.state.memory import ExpiringStore, MemoryBackend
from asgi_guard.state.valkey import ValkeyBackend

M = TypeVar("M")
V = TypeVar("V")


def choose(
    backend: Backend,
    *,
    memory: Callable[[MemoryBackend], M],
    valkey: Callable[[ValkeyBackend], V],
    concern: str = "this concern",
) -> M | V:
    """`memory(backend)` or `valkey(backend)`, by the backend's kind (called once, at build time).

    Raises ConfigError for a backend kind the concern has no form for."""
    if isinstance(backend, MemoryBackend):
        return memory(backend)
    if isinstance(backend, ValkeyBackend):
        return valkey(backend)
    raise ConfigError(f"{concern} has no store form for the {backend.kind!r} backend")


def backend_from_url(
    url: str | None,
    pooling: PoolingConfig | None = None,
    key_prefix: str = "ag",
    multi_worker: Literal["warn", "error"] = "warn",
) -> Backend:
    """memory:// (or unset) -> MemoryBackend; valkey://, valkeys://, valkey+cluster://,
    valkey+sentinel://h:p[,h:p]/<service>[?db=N] -> ValkeyBackend.

    `multi_worker`: what the embedded backend does when it finds sibling worker processes."""
    if not url or url.startswith("memory:"):
        return MemoryBackend(multi_worker=multi_worker)
    return ValkeyBackend(url, pooling, key_prefix)


def backend_from_settings(settings: GuardSettings) -> Backend:
    """The backend `GuardSettings.valkey_url` names (see `backend_from_url`)."""
    return backend_from_url(
        settings.valkey_url, settings.pooling, settings.key_prefix, settings.multi_worker_embedded
    )


__all__ = [
    "Backend",
    "ExpiringStore",
    "MemoryBackend",
    "ValkeyBackend",
    "backend_from_settings",
    "backend_from_url",
    "choose",
    "hash_tag",
    "key_part",
]
