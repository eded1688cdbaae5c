"""Apps and helpers for the telemetry tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.state import Backend

SECRET = "telemetry-test-secret-0123456789abcdef"


def unique(prefix: str = "r") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def token(sub: str = "alice", **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


def settings(**extra: Any) -> GuardSettings:
    """Metrics are opt-in (GuardSettings.metrics_path defaults to empty): these tests serve /metrics."""
    return GuardSettings(jwt_secret=SECRET, jwt_algorithms=["HS256"], **{"metrics_path": "/metrics", **extra})


async def job(request: Request) -> JSONResponse:
    if request.query_params.get("boom"):
        raise RuntimeError("the job blew up")
    return JSONResponse({"ok": True, "id": request.path_params.get("resource_id")})


def guarded(
    path: str,
    config: JobConfig | dict[str, Any],
    *,
    methods: list[str] | None = None,
    endpoint: Any = job,
    settings_: GuardSettings | None = None,
    backend: Backend | None = None,
    extra_routes: list[tuple[str, JobConfig | dict[str, Any]]] = (),  # type: ignore[assignment]
) -> Starlette:
    """A Starlette app with the guard around it and `path` registered with `config`."""
    methods = methods or ["GET", "POST"]
    registry = RouteRegistry()
    registry.register(path, config, methods=methods)
    routes = [Route(path, endpoint, methods=methods)]
    for other, other_config in extra_routes:
        registry.register(other, other_config, methods=methods)
        routes.append(Route(other, endpoint, methods=methods))
    app = Starlette(routes=routes)
    install(app, registry, settings_ or settings(), backend=backend)  # inside Starlette's error middleware
    return app


def parse(text: str) -> dict[str, list[Any]]:
    """Exposition text -> {family name: [samples]}."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def sample(families: dict[str, list[Any]], name: str, **labels: str) -> float | None:
    """The value of the sample called `name` whose labels include `labels` (None if absent)."""
    for samples in families.values():
        for s in samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def local_exposition() -> str:
    return prometheus_client.generate_latest().decode()
