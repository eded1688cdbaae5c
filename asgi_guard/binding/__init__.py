"""Binding policies to the app's own routes (see asgi_guard.stack and docs/binding.md)."""

from asgi_guard.binding.declare import guard, guard_router

__all__ = ["guard", "guard_router"]
