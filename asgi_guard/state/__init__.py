"""Shared-state backends: embedded memory (default) and Valkey."""

from __future__ import annotations

from asgi_guard.core.settings import GuardSettings
from asgi_guard.state.base import Backend
from asgi_guard.state.memory import ExpiringStore, MemoryBackend
from asgi_guard.state.valkey import ValkeyBackend, hash_tag


def backend_from_settings(settings: GuardSettings) -> Backend:
    """memory:// (or unset) -> MemoryBackend; valkey://, valkeys://, valkey+cluster:// -> ValkeyBackend."""
    url = settings.valkey_url
    if not url or url.startswith("memory:"):
        return MemoryBackend()
    return ValkeyBackend(url, settings.pooling, settings.key_prefix)


__all__ = ["Backend", "ExpiringStore", "MemoryBackend", "ValkeyBackend", "backend_from_settings", "hash_tag"]
