"""Exemptions: requests that skip rate limiting and/or credits (never authentication).

```toml
[routes."GET /reports".exempt]          # per route; GuardSettings.exempt is the global one
roles = ["internal"]
cidrs = ["10.0.0.0/8"]
stages = ["rate_limit"]                  # default: both rate_limit and credits
```

A request is exempt from a stage when the global or the route's exemption lists that stage and
matches it: its verified principal's subject (`principals`), one of its roles or scopes, the SHA-256
(hex) of its API key header (`api_keys`, `api_key_header`), its client address (`cidrs`, after
`trusted_proxies` resolution), or the `hook` (`hook(ctx) -> bool`, a callable or "module:function")
answering True. The stages that authenticate still run first: an exemption never admits a request
that authentication refuses. Exempt requests are counted in the stages' metrics as `exempt`.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import re
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from asgi_guard.core.cost import import_hook
from asgi_guard.core.model import GuardModel

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext

ExemptStage = Literal["rate_limit", "credits"]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ExemptConfig(GuardModel):
    """Who skips rate limiting and/or credits (see the module docstring)."""

    stages: list[ExemptStage] = Field(
        default=["rate_limit", "credits"], description="what the matching requests skip: rate_limit, credits"
    )
    principals: list[str] = Field(default=[], description="JWT subjects")
    roles: list[str] = Field(default=[], description="any one of these roles")
    scopes: list[str] = Field(default=[], description="any one of these scopes")
    api_keys: list[str] = Field(default=[], description="SHA-256 hex digests of API keys (never the keys)")
    api_key_header: str = Field(default="x-api-key", description="the header carrying the API key")
    cidrs: list[str] = Field(default=[], description="client networks (IPv4 and IPv6 CIDRs or addresses)")
    hook: str | Callable[..., Any] | None = Field(
        default=None, description='"module:function" or a callable: ctx -> bool (or an awaitable)'
    )

    @field_validator("api_keys")
    @classmethod
    def _hashed(cls, value: list[str]) -> list[str]:
        if any(not _HEX64.match(v) for v in value):
            raise ValueError("exempt.api_keys are SHA-256 hex digests of the keys, not the keys")
        return value

    @field_validator("cidrs")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"exempt.cidrs: {cidr!r} is not a network: {exc}") from exc
        return value

    @field_validator("hook")
    @classmethod
    def _resolve_hook(cls, value: object) -> object:
        return import_hook(value) if isinstance(value, str) else value


class Exemption:
    """An ExemptConfig compiled once: `await exemption.matches(ctx, scope)` -> bool."""

    __slots__ = ("_header", "_hook", "_keys", "_networks", "_principals", "_roles", "_scopes", "stages")

    def __init__(self, config: ExemptConfig) -> None:
        self.stages = frozenset(config.stages)
        self._principals = frozenset(config.principals)
        self._roles = frozenset(config.roles)
        self._scopes = frozenset(config.scopes)
        self._keys = tuple(config.api_keys)
        self._header = config.api_key_header.lower().encode("latin-1")
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in config.cidrs)
        self._hook = config.hook if callable(config.hook) else None

    async def matches(self, ctx: GuardContext, scope: Any) -> bool:
        principal = ctx.principal
        if principal is not None and (
            principal.subject in self._principals
            or not self._roles.isdisjoint(principal.roles)
            or not self._scopes.isdisjoint(principal.scopes)
        ):
            return True
        if self._networks and self._in_networks(ctx.client_ip):
            return True
        if self._keys and self._has_key(scope["headers"]):
            return True
        if self._hook is not None:
            result = self._hook(ctx)
            if inspect.isawaitable(result):
                result = await result
            return result is True
        return False

    def _in_networks(self, client_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def _has_key(self, headers: Any) -> bool:
        for name, value in headers:
            if name == self._header:
                digest = hashlib.sha256(value).hexdigest()
                return any(hmac.compare_digest(digest, known) for known in self._keys)
        return False


def may_exempt(stage: str, *configs: ExemptConfig | None) -> bool:
    """Whether any of these exemptions covers `stage` (a stage asks once, at build time, so routes
    without exemptions pay nothing per request)."""
    return any(config is not None and stage in config.stages for config in configs)


# per owner (the route, or the runtime for the global one), weakly: reloads leave nothing behind
_COMPILED: weakref.WeakKeyDictionary[Any, tuple[ExemptConfig, Exemption]] = weakref.WeakKeyDictionary()


def exemption_for(config: ExemptConfig, owner: Any) -> Exemption:
    """The compiled form of `owner`'s ExemptConfig (built once per owner)."""
    found = _COMPILED.get(owner)
    if found is None or found[0] is not config:
        found = _COMPILED[owner] = (config, Exemption(config))
    return found[1]


async def exempt_stages(ctx: GuardContext, scope: Any) -> frozenset[str]:
    """The stages this request is exempt from, by the global and the route's exemptions."""
    out: frozenset[str] = frozenset()
    runtime, route = ctx.runtime, ctx.route
    for config, owner in ((runtime.settings.exempt, runtime), (route.config.exempt, route)):
        if config is not None:
            exemption = exemption_for(config, owner)
            if not exemption.stages <= out and await exemption.matches(ctx, scope):
                out |= exemption.stages
    return out
