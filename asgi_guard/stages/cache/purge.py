"""Invalidation: a Python API (`CachePurger`) and an opt-in, token-protected admin ASGI app.

Every cache route of a runtime registers its store here at pipeline build time, under its label.
A purge names entries by
- `keys`: primary key digests (`ctx.decisions["cache"].detail["key"]` shows a request's),
- `routes`: route labels (every entry of those routes),
- `resource_ids`: the resource id entries were stored under (path parameter or body field),
- `paths`: request paths (every host, query and variant of the path),
- `tags`: the handler's own tags (the route's `tag_header`, default `Cache-Tag: a, b`, or
  `add_tags(request, "a", "b")`).
Each route's namespace is purged by one script (memory: one call), atomic within the namespace; on
Valkey the namespace's keys, tag sets included, share its `{label}` hash tag, so one script is one
cluster slot. A purge across routes runs one such script per route, all in one pipelined round
trip (concurrently on a cluster): each route's purge is atomic, the set of them is not.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from starlette.types import Receive, Scope, Send

from asgi_guard.core.errors import BackendUnavailable

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.cache.store import CacheStore

SERVICE: Final = "cache.namespaces"  # runtime.service(SERVICE, dict): route label -> CacheStore
DECLARED: Final = "cache.declared"  # route label -> how to make its store (not built yet)
APART: Final = "cache.apart"  # route label -> the other embedded stores of routes sharing it
STATE_TAGS: Final = "cache_tags"  # request.state.cache_tags: tags the handler adds


def _built(runtime: GuardRuntime) -> dict[str, CacheStore]:
    found: dict[str, CacheStore] = runtime.service(SERVICE, dict)
    return found


def _declared(runtime: GuardRuntime) -> dict[str, Callable[[], CacheStore]]:
    found: dict[str, Callable[[], CacheStore]] = runtime.service(DECLARED, dict)
    return found


def namespaces(runtime: GuardRuntime) -> dict[str, CacheStore]:
    """The runtime's cache stores by route label: the built routes' own, and the declared routes'
    made now (once), so a purge reaches every route with a cache, served yet or not."""
    found, pending = _built(runtime), _declared(runtime)
    while pending:
        label, make = pending.popitem()
        if label not in found:
            found[label] = make()
    return found


def _apart(runtime: GuardRuntime) -> dict[str, list[CacheStore]]:
    found: dict[str, list[CacheStore]] = runtime.service(APART, dict)
    return found


def register_namespace(runtime: GuardRuntime, label: str, store: CacheStore, *, apart: bool = False) -> None:
    """A built route's store, under its label. Routes sharing a label share its namespace on Valkey;
    the embedded store (`apart`) keeps one store per distinct setting (capacity, TTL), so a route
    named like another may hold its entries apart: each such store is kept for a purge to reach."""
    built = _built(runtime)
    old = built.get(label)
    if apart and old is not None and old is not store:
        others = _apart(runtime).setdefault(label, [])
        if all(other is not old for other in others):
            others.append(old)
    built[label] = store
    _declared(runtime).pop(label, None)


def _by_label(runtime: GuardRuntime) -> dict[str, list[CacheStore]]:
    """Every store a purge must reach, by route label (each store once)."""
    apart = _apart(runtime)
    found: dict[str, list[CacheStore]] = {}
    for label, store in namespaces(runtime).items():
        found[label] = [store, *(other for other in apart.get(label, ()) if other is not store)]
    return found


def declare_namespace(runtime: GuardRuntime, label: str, make: Callable[[], CacheStore]) -> None:
    """A route whose chain waits for its first request: its store is made when a purge first needs
    it (`namespaces`), not at start-up (10,000 such routes: ~0.1 s and a few MiB saved)."""
    if label not in _built(runtime):
        _declared(runtime).setdefault(label, make)


def add_tags(request: Any, *tags: str) -> None:
    """Tag the entry the current request's response becomes (from a handler)."""
    state = request.scope.setdefault("state", {})
    state.setdefault(STATE_TAGS, []).extend(tags)


def request_tags(scope: Scope) -> list[str]:
    state = scope.get("state")
    if not state:
        return []
    tags = state.get(STATE_TAGS) if isinstance(state, dict) else None
    return [str(t) for t in tags] if tags else []


class CachePurger:
    """Purges a runtime's response cache: `await CachePurger(runtime).purge(tags=["user:7"])`."""

    def __init__(self, runtime: GuardRuntime) -> None:
        self._runtime = runtime

    async def purge(
        self,
        *,
        keys: Sequence[str] = (),
        routes: Sequence[str] = (),
        resource_ids: Sequence[str] = (),
        paths: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> int:
        """Drop the named entries; returns how many went. Raises BackendUnavailable when the store
        cannot be reached, KeyError for an unknown route label."""
        stores = _by_label(self._runtime)
        count = 0
        for label in routes:
            for store in stores[label]:
                count += await store.clear()
        every = [*(f"r:{r}" for r in resource_ids), *(f"p:{p}" for p in paths), *(f"t:{t}" for t in tags)]
        if keys or every:
            count += await self._each(_every(stores), list(keys), every)
        return count

    async def purge_tags(self, tags: Sequence[str]) -> int:
        """Drop entries carrying any of the stage's raw tags (`p:<path>`, `r:<id>`, `t:<tag>`)."""
        return await self._each(_every(_by_label(self._runtime)), [], list(tags))

    async def _each(self, stores: Iterable[CacheStore], keys: list[str], tags: list[str]) -> int:
        from asgi_guard.stages.cache.valkey import ValkeyCacheStore

        stores = list(stores)
        valkey = [s for s in stores if isinstance(s, ValkeyCacheStore)]
        count = 0
        for store in stores:
            if not isinstance(store, ValkeyCacheStore):
                count += await store.purge(keys, tags)
        if valkey:
            answers = await valkey[0].backend.run_many([s.purge_call(keys, tags) for s in valkey])
            for answer in answers:
                if isinstance(answer, BackendUnavailable):
                    raise answer
                count += int(answer)
        return count


def _every(stores: dict[str, list[CacheStore]]) -> Iterable[CacheStore]:
    return (store for group in stores.values() for store in group)


_FIELDS = ("keys", "routes", "resource_ids", "paths", "tags")


class PurgeEndpoint:
    """The admin endpoint as an ASGI app (a class, so Starlette's `Route` mounts it as one)."""

    def __init__(self, runtime: GuardRuntime, token: str) -> None:
        if not token:
            raise ValueError("purge_endpoint needs a non-empty token")
        self._expected = f"Bearer {token}".encode()
        self._purger = CachePurger(runtime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        supplied = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not hmac.compare_digest(supplied, self._expected):
            await _problem(send, 401, "Unauthorized", "a valid bearer token is required")
            return
        if scope["method"] != "POST":
            await _problem(send, 405, "Method Not Allowed", "POST a JSON object")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > 65536:
                await _problem(send, 413, "Content Too Large", "at most 64 KiB")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            doc = json.loads(b"".join(chunks) or b"{}")
            if not isinstance(doc, dict) or not all(
                isinstance(doc.get(f, []), list) and all(isinstance(v, str) for v in doc.get(f, []))
                for f in _FIELDS
            ):
                raise ValueError("an object whose fields are lists of strings")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
            await _problem(send, 400, "Bad Request", f"body: {exc}")
            return
        try:
            count = await self._purger.purge(**{f: doc.get(f, []) for f in _FIELDS})
        except KeyError as exc:
            await _problem(send, 404, "Not Found", f"no cached route {exc}")
            return
        except BackendUnavailable:
            await _problem(send, 503, "Service Unavailable", "cache store unavailable")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps({"purged": count}).encode()})


async def _problem(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"cache-control", b"no-store")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def purge_endpoint(runtime: GuardRuntime, token: str) -> PurgeEndpoint:
    """The opt-in admin endpoint, an ASGI app to route yourself:
    `Route("/_cache/purge", purge_endpoint(runtime, token), methods=["POST"])`.

    `POST` a JSON object with any of `keys`, `routes`, `resource_ids`, `paths`, `tags` (lists of
    strings) and `Authorization: Bearer <token>` (compared in constant time); answers
    `200 {"purged": n}`. A wrong or missing token is 401, another method 405, a bad body 400 (413
    past 64 KiB), an unknown route label 404, the store down 503; every error is RFC 9457
    problem+json. Keep it off public listeners (or register its path with the guard's IP allowlist)."""
    return PurgeEndpoint(runtime, token)
