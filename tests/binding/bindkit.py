"""Helpers for the binding tests: a stage that records every policy run ("charge"), apps, tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt

from asgi_guard import GuardSettings, stack
from asgi_guard.core.stage import Stage
from asgi_guard.stages import load_stages

SECRET = "binding-tests-secret-binding-tests-secret"
CHARGES: list[tuple[str, str, str]] = []  # (route label, method, path) of each policy run


class Charge(Stage):
    """Right after telemetry: records that the route's policy ran for this request."""

    name = "charge"

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        CHARGES.append((self.route.label, scope.get("method", "WS"), scope["path"]))
        await self.app(scope, receive, send)


@contextmanager
def charging() -> Iterator[list[tuple[str, str, str]]]:
    """Insert the Charge stage into the stack order while the block builds and serves apps."""
    stages = load_stages()
    previous = stack.STAGES
    stack.STAGES = (stages[0], Charge, *stages[1:])
    CHARGES.clear()
    try:
        yield CHARGES
    finally:
        stack.STAGES = previous
        CHARGES.clear()


def settings(**extra: Any) -> GuardSettings:
    # metrics are opt-in; these tests serve and read them
    return GuardSettings(_env_file=None, jwt_secret=SECRET, **{"metrics_path": "/metrics", **extra})  # type: ignore[call-arg]


def token(sub: str = "alice", **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600, **claims}, SECRET, algorithm="HS256")


def bearer(sub: str = "alice", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, **claims)}"}


JWT = {"security": {"auth_type_required": "jwt"}}


def client(app: Any, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000), root_path=root_path
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
