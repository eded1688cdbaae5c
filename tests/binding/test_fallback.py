"""A bare ASGI app (no Starlette router): the registry matcher on the path the app routes on."""

from __future__ import annotations

from typing import Any

from bindkit import JWT, bearer, client, settings

from asgi_guard import GuardMiddleware, JobConfig, RouteRegistry

SEEN: list[str] = []


async def bare(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    SEEN.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"private"})


def app(**extra: Any) -> GuardMiddleware:
    registry = RouteRegistry()
    registry.register("/jobs/{rid}", JobConfig(**JWT))
    return GuardMiddleware(bare, registry=registry, settings=settings(**extra))


async def test_root_path_is_removed_before_matching() -> None:
    SEEN.clear()
    async with client(app(), root_path="/api") as c:
        assert (await c.get("/api/jobs/1")).status_code == 401
        assert (await c.get("/api/jobs/1", headers=bearer())).status_code == 200
        assert (await c.request("QUERY", "/api/jobs/1")).status_code == 401  # every method
    assert SEEN == ["/api/jobs/1"]


async def test_control_characters_in_the_target_are_a_400() -> None:
    SEEN.clear()
    async with client(app()) as c:
        for target in ("/jobs/1%0A", "/jobs/1%0D", "/jobs/%00"):
            response = await c.get(target)
            assert response.status_code == 400, target
            assert response.headers["content-type"] == "application/problem+json"
    assert SEEN == []


async def test_deny_mode_in_the_fallback() -> None:
    async with client(app(unregistered="deny")) as c:
        response = await c.get("/elsewhere")
        assert response.status_code == 404 and "/elsewhere" not in response.text
