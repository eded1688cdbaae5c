"""A request's cost (units for rate limits, a price for credits), from where the route says.

```toml
[routes."POST /v1/complete".rate_limit]
cost = { source = "body", name = "max_tokens", default = 256, max = 4096 }
```

Sources (`CostConfig.source`):
- `fixed`: `value` (default 1) for every request;
- `path` / `query`: the path parameter or query parameter `name`;
- `body`: the JSON body field `name` (dots walk into objects: `"usage.max_tokens"`);
- `header`: header `name`, believed only from a direct peer in `GuardSettings.trusted_proxies`
  (an upstream that sets it); from anyone else it is ignored, as if absent;
- `hook`: `hook(ctx) -> int` (or an awaitable of one), a callable in code or `"module:function"` in TOML;
- `tier`: `tiers[the request's tier]` (the route's `tier` selector, asgi_guard.core.tiers), else
  `default`, else `value`: `credits_price = {source = "tier", tiers = {free = 2, pro = 1}}`.

A cost is a whole number from 0 to `max`. A value that is not one is the client's fault: a 400
problem (`invalid-cost`), never a 500. An absent value is `default`, or a 400 (`missing-cost`) when the
route gives none. A hook that raises or returns garbage is the app's fault and surfaces as such.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from pydantic import Field, field_validator, model_validator

from asgi_guard.core.model import GuardModel
from asgi_guard.core.problems import Problem
from asgi_guard.core.proxies import parse_proxies, peer_trusted

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext

CostHook = Callable[["GuardContext"], "int | Awaitable[int]"]
MAX_COST = 2**53  # exact in a double: rate_limit.lua reads it as a Lua number
_NAME = r"^[A-Za-z0-9_.\-]{1,128}$"


def import_hook(spec: str) -> Callable[..., Any]:
    """`"package.module:function"` -> the function (ValueError when it cannot be found)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"hook {spec!r}: expected 'module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"hook {spec!r} cannot be imported: {exc}") from exc
    if not callable(target):
        raise ValueError(f"hook {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


class CostConfig(GuardModel):
    """Where a request's cost comes from (see the module docstring for each source)."""

    source: Literal["fixed", "path", "query", "body", "header", "hook", "tier"] = Field(
        default="fixed", description="fixed, path, query, body, header (trusted upstream), hook or tier"
    )
    tiers: dict[str, int] = Field(default={}, description="source tier: tier name -> cost")
    value: int = Field(default=1, ge=0, le=MAX_COST, description="the cost when source is fixed")
    name: str | None = Field(
        default=None, pattern=_NAME, description="the parameter, body field (dotted) or header to read"
    )
    hook: str | Callable[..., Any] | None = Field(
        default=None, description='"module:function" (TOML) or a callable (code): ctx -> int'
    )
    default: int | None = Field(
        default=None, ge=0, le=MAX_COST, description="the cost when the source has no value (None: 400)"
    )
    max: int = Field(default=1_000_000, ge=0, le=MAX_COST, description="larger costs are a 400")

    @field_validator("hook")
    @classmethod
    def _resolve_hook(cls, value: object) -> object:
        return import_hook(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _complete(self) -> CostConfig:
        if self.source in ("path", "query", "body", "header") and not self.name:
            raise ValueError(f"cost source {self.source!r} needs a name")
        if self.source == "tier" and not self.tiers:
            raise ValueError("cost source 'tier' needs tiers = {name = cost}")
        if any(not 0 <= v <= self.max for v in self.tiers.values()):
            raise ValueError(f"cost tiers must be between 0 and max ({self.max})")
        if self.source == "hook" and self.hook is None:
            raise ValueError("cost source 'hook' needs hook = 'module:function' (or a callable)")
        return self

    @classmethod
    def coerce(cls, value: object) -> object:
        """`cost = 5` is short for `{source = "fixed", value = 5}`."""
        if isinstance(value, int) and not isinstance(value, bool):
            return {"source": "fixed", "value": value}
        return value


def _invalid(detail: str) -> Problem:
    return Problem(400, "invalid-cost", "Bad Request", detail)


def _whole(value: object, what: str, ceiling: int) -> int:
    """A cost from a client-controlled value: a whole number in [0, ceiling], else a 400."""
    if isinstance(value, bool):
        raise _invalid(f"{what} must be a whole number, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 16:
            raise _invalid(f"{what} must be a whole number")
        value = int(text)
    if not isinstance(value, int):
        raise _invalid(f"{what} must be a whole number")
    if value < 0 or value > ceiling:
        raise _invalid(f"{what} must be between 0 and {ceiling}, got {value}")
    return value


class CostSource:
    """A CostConfig compiled once per route: `await source(ctx, scope)` -> the request's cost."""

    __slots__ = ("_config", "_header", "_hook", "_path", "_trusted", "fixed", "needs_body")

    def __init__(self, config: CostConfig, trusted_proxies: list[str] | tuple[str, ...] = ()) -> None:
        self._config = config
        self.fixed: int | None = config.value if config.source == "fixed" else None
        self.needs_body = config.source == "body"
        self._path = tuple((config.name or "").split("."))
        self._header = (config.name or "").lower().encode("latin-1")
        self._hook = config.hook if callable(config.hook) else None
        self._trusted = parse_proxies(trusted_proxies)

    async def __call__(self, ctx: GuardContext, scope: MutableMapping[str, Any]) -> int:
        if self.fixed is not None:
            return self.fixed
        config = self._config
        source = config.source
        what = f"{source} {config.name!r}" if config.name else source
        if source == "tier":
            tier = await ctx.resolve_tier(scope, config.tiers)
            found = config.tiers.get(tier) if tier is not None else None
            if found is not None:
                return found
            return config.value if config.default is None else config.default
        if source == "hook":
            result = self._hook(ctx)  # type: ignore[misc]
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, bool) or not isinstance(result, int) or not 0 <= result <= config.max:
                raise TypeError(f"cost hook returned {result!r}, not a whole number in [0, {config.max}]")
            return result
        value = await self._raw(ctx, scope)
        if value is None:
            if config.default is None:
                raise Problem(400, "missing-cost", "Bad Request", f"the request has no {what} (its cost)")
            return config.default
        return _whole(value, what, config.max)

    async def _raw(self, ctx: GuardContext, scope: MutableMapping[str, Any]) -> object:
        source, name = self._config.source, self._config.name or ""
        if source == "path":
            return ctx.path_params.get(name)
        if source == "query":
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
            return values[0] if values else None
        if source == "header":
            if not peer_trusted(scope, self._trusted):
                return None
            for key, value in scope["headers"]:
                if key == self._header:
                    return value.decode("latin-1")
            return None
        document = await ctx.json()
        for part in self._path:
            if not isinstance(document, dict):
                return None
            document = document.get(part)
        return document
