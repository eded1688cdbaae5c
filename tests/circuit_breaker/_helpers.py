"""This area's helpers are the shared ones (tests/guardkit.py)."""

from guardkit import Clock, client, guarded_app

__all__ = ["Clock", "client", "guarded_app"]
