"""asgi-guard: ordered pure-ASGI middlewares that enforce per-route policies.

The public names are imported on first use (PEP 562), so `import asgi_guard` (the CLI's --version,
a tool reading `__version__`) costs almost nothing, and an app pays only for what it uses: a route
with a rate limit alone never imports JWT, cryptography, OpenTelemetry, Prometheus, pybreaker,
Valkey or Pulsar (tests/core/test_lazy_imports.py checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from asgi_guard.binding.declare import guard, guard_router
    from asgi_guard.config import JobConfig
    from asgi_guard.core.context import GuardContext, Principal, get_guard
    from asgi_guard.core.errors import BackendUnavailable, ConfigError
    from asgi_guard.core.problems import Problem
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.core.settings import GuardSettings
    from asgi_guard.problem_handlers import add_problem_handlers
    from asgi_guard.registry import RouteRegistry
    from asgi_guard.stack import GuardMiddleware, install

__getattr__ = lazy_exports(
    __name__,
    {
        "BackendUnavailable": "core.errors",
        "ConfigError": "core.errors",
        "GuardContext": "core.context",
        "GuardMiddleware": "stack",
        "GuardRuntime": "core.runtime",
        "GuardSettings": "core.settings",
        "JobConfig": "config",
        "Principal": "core.context",
        "Problem": "core.problems",
        "add_problem_handlers": "problem_handlers",
        "RouteRegistry": "registry",
        "get_guard": "core.context",
        "guard": "binding.declare",
        "guard_router": "binding.declare",
        "install": "stack",
    },
)

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
    "add_problem_handlers",
    "get_guard",
    "guard",
    "guard_router",
    "install",
]
