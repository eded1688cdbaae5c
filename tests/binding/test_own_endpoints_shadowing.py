"""The guard's own endpoints (metrics_path, health_path, console_path) are served before the app's
router: an app route at the same path would never be reached, and the operator would believe it
guarded. Start-up (and any later bind) refuses the collision instead of hiding the route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from asgi_guard import ConfigError, GuardSettings, RouteRegistry, install


async def page(request: Any) -> PlainTextResponse:
    return PlainTextResponse("the app's own")


TOKEN = "console-token-0123456789"


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ({"metrics_path": "/metrics"}, "/metrics"),
        ({"health_path": "/_guard/health"}, "/_guard/health"),
        ({"console_path": "/ops", "console_token": TOKEN}, "/ops"),
        ({"console_path": "/ops", "console_token": TOKEN}, "/ops/users"),
    ],
)
def test_an_app_route_under_an_own_endpoint_is_a_config_error(setting: dict[str, Any], path: str) -> None:
    app = Starlette(routes=[Route("/items", page), Route(path, page)])
    with pytest.raises(ConfigError, match="shadowed"):
        install(app, RouteRegistry(), GuardSettings(_env_file=None, **setting))  # type: ignore[arg-type]


def test_a_mounted_app_route_is_seen_with_its_prefix() -> None:
    app = Starlette(routes=[Mount("/api", routes=[Route("/metrics", page)])])
    with pytest.raises(ConfigError, match="shadowed"):
        install(app, RouteRegistry(), GuardSettings(_env_file=None, metrics_path="/api/metrics"))  # type: ignore[call-arg]


async def test_a_route_added_while_serving_is_logged_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Starlette(routes=[Route("/items", page)])
    install(app, RouteRegistry(), GuardSettings(_env_file=None, metrics_path="/metrics"))  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items")).status_code == 200
        app.router.routes.append(Route("/metrics", page))
        assert (await client.get("/items")).status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and metrics.text != "the app's own"
    assert any("'/metrics' is shadowed" in r.getMessage() for r in caplog.records)


def test_neighbouring_paths_are_not_collisions() -> None:
    app = Starlette(routes=[Route("/metrics2", page), Route("/opsx", page), Route("/{name}", page)])
    settings = GuardSettings(_env_file=None, metrics_path="/metrics", console_path="/ops", console_token=TOKEN)  # type: ignore[call-arg]
    install(app, RouteRegistry(), settings)
