"""The health endpoint served at `GuardSettings.health_path` (off when empty).

`GET <health_path>` is the readiness probe: it pings the state backend (bounded by
`HEALTH_TIMEOUT` seconds) and answers 200 `{"status": "ok", "backend": "ok"}`, or 503
problem+json (RFC 9457, type `.../backend-unavailable`, `"backend": "unavailable"`, Retry-After: 1)
when the backend does not answer. `GET <health_path>?probe=live` is the liveness probe: 200
`{"status": "ok"}` without touching the backend, so a Valkey outage takes pods out of service
(readiness) without restarting them (liveness). Other methods get 405; HEAD answers like GET
without a body.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.problems import Problem, backend_unavailable, send_problem
from asgi_guard.core.runtime import GuardRuntime

HEALTH_TIMEOUT = 2.0  # seconds a readiness ping may take before the answer is 503


def health_endpoint(runtime: GuardRuntime) -> ASGIApp:
    """The ASGI app for `GuardSettings.health_path` (readiness; `?probe=live` for liveness)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            problem = Problem(405, "method-not-allowed", "Method Not Allowed", "use GET or HEAD")
            problem.headers.append((b"allow", b"GET, HEAD"))
            await send_problem(send, problem)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if query.get("probe") == "live":
            await _ok(send, {"status": "ok"}, method)
            return
        try:
            alive = await asyncio.wait_for(runtime.backend.ping(), HEALTH_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 -- any ping failure (time-out, backend error) means not ready
            alive = False
        if alive:
            await _ok(send, {"status": "ok", "backend": "ok"}, method)
            return
        problem = backend_unavailable("health")
        problem.extra.update({"status": "unavailable", "backend": "unavailable"})
        await send_problem(send, problem)

    return app


async def _ok(send: Send, document: dict[str, str], method: str) -> None:
    payload = json.dumps(document, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})
