"""Where asgi-guard keeps files of its own on this machine (the default outbox, dev downloads)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`ASGI_GUARD_CACHE`, else `~/.cache/asgi-guard`."""
    return Path(os.environ.get("ASGI_GUARD_CACHE", Path.home() / ".cache" / "asgi-guard"))
