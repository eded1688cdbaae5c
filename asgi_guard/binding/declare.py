"""Policies declared next to the route: `@guard(...)` on an endpoint, `guard_router(...)` on a router.

Both only attach a validated, frozen `JobConfig` to the object; nothing happens until the app starts
and the stack binds every policy to the app's own route objects (`asgi_guard.binding.bind`). A route's
effective config is its routers' defaults, outermost first, with the route's own declaration (the
decorator or a `RouteRegistry` entry) deep-merged on top: only the fields a layer sets explicitly
override the layer below it; lists replace, they do not append (the same rule as TOML `extends`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from asgi_guard.config import JobConfig
from asgi_guard.core.errors import ConfigError

ATTR = "__asgi_guard__"
T = TypeVar("T")


def _config(config: JobConfig | Mapping[str, Any] | None, fields: Mapping[str, Any], where: str) -> JobConfig:
    if isinstance(config, JobConfig) and not fields:
        return config
    data: dict[str, Any] = {}
    if isinstance(config, JobConfig):
        data = config.model_dump(exclude_unset=True)
    elif config is not None:
        data = dict(config)
    data = deep_merge(data, fields)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from exc


def guard(config: JobConfig | Mapping[str, Any] | None = None, /, **fields: Any) -> Callable[[T], T]:
    """Declare the policy of the endpoint it decorates (a function, or an ASGI/HTTPEndpoint class).

    `@guard(JobConfig(rate_limit=...))`, `@guard({"required_credits": 1})` or `@guard(required_credits=1)`
    (keyword fields are merged over the positional config). Put it under or over `@app.get(...)`: the
    route keeps a reference to the same function, and the policy is read when the app starts.
    Raises ConfigError (naming the endpoint) for an invalid config, at import time.
    """

    def decorate(endpoint: T) -> T:
        name = getattr(endpoint, "__qualname__", repr(endpoint))
        setattr(endpoint, ATTR, _config(config, fields, f"@guard on {name}"))
        return endpoint

    return decorate


def guard_router(router: T, config: JobConfig | Mapping[str, Any] | None = None, /, **fields: Any) -> T:
    """Give every route under `router` a default policy (returns `router`).

    `router` is a FastAPI `APIRouter`, a Starlette `Router`, a `Mount`, or a mounted Starlette app.
    Each route under it inherits the config; a route's own `@guard(...)` or registry entry overrides
    field by field. Nested routers stack: the outer router's defaults, then the inner one's.
    """
    name = type(router).__name__
    setattr(router, ATTR, _config(config, fields, f"guard_router on {name} {getattr(router, 'prefix', '')}"))
    return router


def declared(obj: Any) -> JobConfig | None:
    """The config `@guard`/`guard_router` attached to `obj` (None when there is none)."""
    found = getattr(obj, ATTR, None)
    if found is None:  # the usual answer; isinstance against a pydantic model goes through ABCMeta
        return None
    return found if isinstance(found, JobConfig) else None


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`, recursively for tables; anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def layered(layers: list[JobConfig], where: str) -> JobConfig:
    """One config from router defaults (outermost first) and the route's own declaration (last)."""
    if len(layers) == 1:
        return layers[0]
    data: dict[str, Any] = {}
    for layer in layers:
        data = deep_merge(data, layer.model_dump(exclude_unset=True))
    return _config(data, {}, where)
