"""Cache keys: endpoint, method, path (hence path parameters), resource id, query, vary headers, user."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from asgi_guard.core.context import GuardContext
    from asgi_guard.core.stage import RouteInfo
    from asgi_guard.stages.cache.config import CacheConfig


class CacheKeyBuilder:
    """Built once per route; `key()` hashes the parts that make two requests the same resource.

    Parts are length-prefixed before hashing, so no crafted value can make two different requests
    collide; the digest keeps backend keys short whatever the query string holds.
    """

    __slots__ = ("_from_body", "_label", "_shared", "_vary")

    def __init__(self, route: RouteInfo[CacheConfig]) -> None:
        config = route.config
        self._label = route.label.encode()
        self._vary = tuple(name.encode("latin-1") for name in config.vary_headers)
        self._shared = config.shared
        self._from_body = route.resource_id_from_body

    async def key(self, ctx: GuardContext, scope: Scope) -> str:
        digest = hashlib.blake2b(digest_size=16)
        update = digest.update

        def part(value: bytes) -> None:
            update(len(value).to_bytes(4, "big"))
            update(value)

        part(self._label)
        part(ctx.method.encode())
        part(ctx.path.encode())
        resource = await ctx.resolve_resource_id() if self._from_body else ctx.resource_id
        part(b"" if resource is None else b"r" + resource.encode())
        part(scope.get("query_string", b""))
        if self._vary:
            headers = scope["headers"]
            for name in self._vary:
                part(name)
                for key, value in headers:
                    if key == name:
                        part(value)
        if not self._shared and ctx.principal is not None:
            part(b"u" + ctx.principal.subject.encode())
        else:
            part(b"*")
        return digest.hexdigest()
