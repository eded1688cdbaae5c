"""Apps for the policy tests: a JWT-authenticated route behind the full stack, tokens to call it."""

from __future__ import annotations

import time
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.state import Backend

SECRET = "policy-tests-" * 4 + "0123456789"
TIERS = {"by": "claim:tier", "default": "free"}


def token(sub: str, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600, **claims}, SECRET, algorithm="HS256")


def bearer(sub: str, **claims: Any) -> dict[str, str]:
    return {"authorization": "Bearer " + token(sub, **claims)}


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def policy_app(
    settings: GuardSettings | None = None,
    backend: Backend | None = None,
    path: str = "/items",
    **job: Any,
) -> GuardMiddleware:
    """One JWT-protected route at `path` with the given JobConfig fields."""
    registry = RouteRegistry()
    job.setdefault("security", {"auth_type_required": "jwt"})
    registry.register(path, JobConfig(endpoint_name="items", **job))
    app = Starlette(routes=[Route(path, ok, methods=["GET", "POST"])])
    base = {"jwt_secret": SECRET, "_env_file": None, "metrics_collect": True}  # tests read the counters
    if settings is not None:
        base.update(settings.model_dump(exclude_unset=True))
    return GuardMiddleware(app, registry=registry, settings=GuardSettings(**base), backend=backend)  # type: ignore[arg-type]
