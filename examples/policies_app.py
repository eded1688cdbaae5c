"""Dynamic policies: per-tier limits, a cost per request, usage-adjusted credits, exemptions, and
routes.toml reloaded while the app runs (docs/policies.md).

Run it with `python examples/policies_app.py`: uvicorn on 127.0.0.1 with the embedded backend,
printing a free and a pro development JWT and curl lines to try. Then edit
examples/policies_routes.toml (say `free = "40000/min"`): the next response's RateLimit-Policy shows it.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardRuntime, GuardSettings, RouteRegistry, get_guard, install
from asgi_guard.reload import install_reload
from asgi_guard.stages.credits import credit_store

ROUTES = Path(__file__).with_name("policies_routes.toml")
USERS = ("free-user", "pro-user")


async def complete(request: Request) -> JSONResponse:
    """Pretend to generate up to max_tokens tokens; report how many were really used."""
    body = await request.json()
    used = min(int(body["max_tokens"]), 3 + len(str(body.get("prompt", ""))) // 4)
    guard = get_guard(request)
    if guard is not None:
        guard.report_usage(used)  # credits keep `used` of the max_tokens reserved, refund the rest
    return JSONResponse({"text": "lorem " * used, "usage": {"tokens": used}})


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"models": ["tiny", "large"]})


def build_settings() -> GuardSettings:
    settings = GuardSettings()
    if settings.jwt_secret is None and not (settings.jwt_public_key or settings.jwks_url):
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(32))})
    return settings


settings = build_settings()
runtime = GuardRuntime(settings)
app = Starlette(routes=[Route("/v1/complete", complete, methods=["POST"]), Route("/v1/models", models)])


async def grant_demo_credits() -> None:
    store = credit_store(runtime.backend)
    for user in USERS:
        if await store.balance(user) == 0:
            await store.grant(user, 10_000)


runtime.on_startup(grant_demo_credits)
install(app, RouteRegistry.from_file(ROUTES), runtime=runtime)
# after install(): watch the file, reload on SIGHUP, and (with a token) POST /_guard/reload
reloader = install_reload(app, ROUTES, admin_token=os.environ.get("ASGI_GUARD_ADMIN_TOKEN"))


def dev_token(subject: str, plan: str | None = None, ttl: int = 3600, **claims: Any) -> str:
    assert settings.jwt_secret is not None
    now = int(time.time())
    payload: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + ttl, **claims}
    if plan is not None:
        payload["plan"] = plan
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    base = f"http://{host}:{port}"
    free, pro = dev_token(USERS[0]), dev_token(USERS[1], plan="pro")
    body = '{"max_tokens": 512, "prompt": "hello"}'
    print("asgi-guard dynamic policies example (embedded backend)\n")
    print(f"free JWT: {free}\npro JWT:  {pro}\n")
    print(f"  curl -si -X POST {base}/v1/complete -H 'Authorization: Bearer {free}' -d '{body}'")
    print(f"  curl -si {base}/v1/models -H 'Authorization: Bearer {pro}'")
    print(f"\nEdit {ROUTES} and watch RateLimit-Policy change.\n")
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    serve(
        os.environ.get("ASGI_GUARD_DEMO_HOST", "127.0.0.1"),
        int(os.environ.get("ASGI_GUARD_DEMO_PORT", "8000")),
    )
