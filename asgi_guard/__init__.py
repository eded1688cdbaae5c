"""asgi-guard: ordered pure-ASGI middlewares that enforce per-route policies."""

from .config import JobConfig
from .config.settings import GuardSettings
from .context import GuardContext, Principal, get_guard
from .errors import BackendUnavailable, ConfigError
from .problems import Problem
from .registry import RouteRegistry
from .runtime import GuardRuntime
from .stack import GuardMiddleware, install

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
    "install",
]
