"""asgi-guard: ordered pure-ASGI middlewares that enforce per-route policies."""

from asgi_guard.binding.declare import guard, guard_router
from asgi_guard.config import JobConfig
from asgi_guard.core.context import GuardContext, Principal, get_guard
from asgi_guard.core.errors import BackendUnavailable, ConfigError
from asgi_guard.core.problems import Problem
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.core.settings import GuardSettings
from asgi_guard.registry import RouteRegistry
from asgi_guard.stack import GuardMiddleware, install

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "GuardContext",
    "GuardMiddleware",
    "GuardRuntime",
    "GuardSettings",
    "JobConfig",
    "Principal",
    "Problem",
    "RouteRegistry",
    "get_guard",
    "guard",
    "guard_router",
    "install",
]
