"""Drive an ASGI app in-process without a server, so a benchmark measures the stack, not sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

Headers = list[tuple[bytes, bytes]]


def make_scope(method: str, path: str, headers: Headers | None = None, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"bench"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any, scope: dict[str, Any], body: bytes = b"") -> int:
    """One request; returns the status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope, state={}), receive, send)
    return status


async def per_request_us(
    app: Any, scope_for: Callable[[int], dict[str, Any]], n: int, body: bytes = b"", budget_s: float = 10.0
) -> tuple[float, dict[int, int]]:
    """Median-of-5 microseconds per request over `n` sequential requests (bounded by `budget_s`)."""
    statuses: dict[int, int] = {}
    for i in range(min(200, n)):  # warm-up: pipelines, caches, lazily created collectors
        await call(app, scope_for(i), body)
    rounds = []
    deadline = time.perf_counter() + budget_s
    for _ in range(5):
        start = time.perf_counter()
        for i in range(n):
            status = await call(app, scope_for(i), body)
            statuses[status] = statuses.get(status, 0) + 1
        rounds.append((time.perf_counter() - start) / n * 1e6)
        if time.perf_counter() > deadline:
            break
    rounds.sort()
    return rounds[len(rounds) // 2], statuses


async def call_cache_status(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, str]:
    """One request; returns (status, cache verdict) where the verdict is the value of `X-Cache`
    (asgi-guard) or `X-FastAPI-Cache` (fastapi-cache2), "" when neither is present."""
    status = 0
    verdict = ""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, verdict
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", ()):
                if name in (b"x-cache", b"x-fastapi-cache"):
                    verdict = value.decode()

    await app(dict(scope, state={}), receive, send)
    return status, verdict
