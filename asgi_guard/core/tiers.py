"""Which tier a request belongs to: one choice per route, read by every stage that varies by tier.

```toml
[routes."GET /search".tier]
by = "claim:tier"          # or "role", "scope", "api_key:X-API-Key", "hook"
default = "free"

[routes."GET /search".rate_limit]
enabled = true
tiers = { free = "60/min", pro = "600/min" }
```

The tier is chosen from the *verified* principal (the security stage runs first), never from what a
client merely asserts:
- `claim:NAME`: the principal's claim NAME, when it is a tier name (and one of `tiers`, if listed);
- `role` / `scope`: the first tier, in the order `tiers` lists them, whose name is one of the
  principal's roles / scopes (write the best tier first);
- `api_key:HEADER`: the SHA-256 (hex) of the header's value looked up in `keys` (hashes, so the
  routes file holds no secret);
- `hook`: `hook(ctx) -> str | None` (or an awaitable), a callable or `"module:function"`: any lookup,
  such as an API-key table in a database.

Anything else (no principal, an unknown value, a hook answering None) is `default`. A stage given a
tier it does not list uses its entry for `default`, and when it lists neither, its own untiered
settings. The set of tier names is fixed by
the configuration, so metric labels stay bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from asgi_guard.core.cost import import_hook
from asgi_guard.core.model import GuardModel

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext

TIER_NAME = r"^[A-Za-z0-9_\-]{1,32}$"
_BY = re.compile(
    r"^(claim:[A-Za-z0-9_.:\-/]{1,64}|role|scope|api_key:[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}|hook)$"
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIER = re.compile(TIER_NAME)


class TierConfig(GuardModel):
    """How a route's requests are sorted into tiers (see the module docstring)."""

    by: str = Field(description='"claim:NAME", "role", "scope", "api_key:HEADER" or "hook"')
    default: str = Field(pattern=TIER_NAME, description="the tier of requests nothing else places")
    tiers: list[str] = Field(
        default=[],
        description="the known tier names, best first (role/scope pick the first held; default: none)",
    )
    keys: dict[str, str] = Field(
        default={}, description="api_key: SHA-256 hex of a key -> its tier (never the key itself)"
    )
    hook: str | Callable[..., Any] | None = Field(
        default=None, description='hook: "module:function" or a callable, ctx -> tier name or None'
    )

    @field_validator("by")
    @classmethod
    def _check_by(cls, value: str) -> str:
        if not _BY.match(value):
            raise ValueError(f"tier.by: {value!r} is not claim:NAME, role, scope, api_key:HEADER or hook")
        return value

    @field_validator("hook")
    @classmethod
    def _resolve_hook(cls, value: object) -> object:
        return import_hook(value) if isinstance(value, str) else value

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for digest, tier in value.items():
            if not _HEX64.match(digest):
                raise ValueError("tier.keys: keys are SHA-256 hex digests of API keys, not the keys")
            if not re.match(TIER_NAME, tier):
                raise ValueError(f"tier.keys: {tier!r} is not a tier name")
        return value

    @model_validator(mode="after")
    def _complete(self) -> TierConfig:
        if self.by == "hook" and self.hook is None:
            raise ValueError("tier.by = 'hook' needs hook = 'module:function' (or a callable)")
        if self.by.startswith("api_key:") and not self.keys:
            raise ValueError("tier.by = 'api_key:...' needs keys = {sha256-hex = tier}")
        if self.by in ("role", "scope") and not self.tiers:
            raise ValueError(f"tier.by = {self.by!r} needs tiers = [...] (best first)")
        return self


class TierSelector:
    """A TierConfig compiled once: `await selector(ctx, scope)` -> the request's tier name."""

    __slots__ = ("_config", "_header", "_hook", "_kind", "_name", "_order")

    def __init__(self, config: TierConfig) -> None:
        self._config = config
        kind, _, name = config.by.partition(":")
        self._kind, self._name = kind, name
        self._header = name.lower().encode("latin-1")
        self._order = tuple(config.tiers)
        self._hook = config.hook if callable(config.hook) else None

    async def __call__(self, ctx: GuardContext, scope: Any) -> str:
        config, kind = self._config, self._kind
        principal = ctx.principal
        if kind == "claim":
            value = principal.claims.get(self._name) if principal is not None else None
            if not isinstance(value, str) or not _TIER.match(value):
                return config.default
            return value if not self._order or value in self._order else config.default
        if kind in ("role", "scope"):
            if principal is None:
                return config.default
            held = principal.roles if kind == "role" else principal.scopes
            return next((tier for tier in self._order if tier in held), config.default)
        if kind == "api_key":
            return self._by_key(scope["headers"])
        result = self._hook(ctx)  # type: ignore[misc]
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return config.default
        if not isinstance(result, str) or not _TIER.match(result):
            raise TypeError(f"tier hook returned {result!r}, not a tier name")
        return result

    def _by_key(self, headers: Iterable[tuple[bytes, bytes]]) -> str:
        for key, value in headers:
            if key == self._header:
                digest = hashlib.sha256(value).hexdigest()
                for known, tier in self._config.keys.items():
                    if hmac.compare_digest(known, digest):
                        return tier
                break
        return self._config.default


# per owner (the route that holds the config), weakly: a route dropped by a reload takes its selector
_SELECTORS: weakref.WeakKeyDictionary[Any, TierSelector] = weakref.WeakKeyDictionary()


def selector_for(config: TierConfig, owner: Any) -> TierSelector:
    """The compiled selector of `owner`'s TierConfig (built once per owner, usually a route)."""
    found = _SELECTORS.get(owner)
    if found is None or found._config is not config:
        found = _SELECTORS[owner] = TierSelector(config)
    return found
