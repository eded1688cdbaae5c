"""Attacks on the route binding: requests that reached a guarded handler without its policy."""

from __future__ import annotations

from typing import Any

import pytest
from binding.bindkit import JWT, bearer, client, settings
from fastapi import FastAPI
from guardkit import drive, http_scope
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Host, Mount

from asgi_guard import GuardMiddleware, JobConfig, RouteRegistry, guard, install

RAN: list[str] = []


async def upper_casing_app(scope: Any, receive: Any, send: Any) -> None:
    """What WSGI bridges to Flask/Werkzeug (`REQUEST_METHOD.upper()`) and Django do: `post` is POST."""
    if scope["type"] != "http":
        return
    RAN.append(scope["method"].upper())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"money moved"})


async def raw(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """One request with the method exactly as sent on the wire (h11/httptools pass `post` through)."""
    sent, error = await drive(app, http_scope(method, path, headers or ()))
    if error is not None:
        raise error
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def post_only() -> RouteRegistry:
    registry = RouteRegistry()
    registry.register("/transfer", JobConfig(**JWT), methods=["POST"])
    return registry


@pytest.mark.parametrize("method", ["post", "Post"])
async def test_lowercase_method_skips_the_fallback_policy(method: str) -> None:
    RAN.clear()
    app = GuardMiddleware(upper_casing_app, registry=post_only(), settings=settings())
    assert await raw(app, "POST", "/transfer") == 401
    assert await raw(app, method, "/transfer") == 401
    assert RAN == []


@pytest.mark.parametrize("method", ["post", "Post"])
async def test_lowercase_method_skips_a_mounted_apps_policy(method: str) -> None:
    RAN.clear()
    registry = RouteRegistry()
    registry.register("/legacy/{path:path}", JobConfig(**JWT), methods=["POST"])
    app = Starlette(routes=[Mount("/legacy", upper_casing_app)])
    install(app, registry, settings())
    assert await raw(app, "POST", "/legacy/transfer") == 401
    assert await raw(app, method, "/legacy/transfer") == 401
    assert RAN == []


def guarded_sub_app() -> FastAPI:
    sub = FastAPI()

    @sub.get("/secret")
    @guard(JobConfig(**JWT))
    async def secret() -> dict[str, int]:
        RAN.append("secret")
        return {"secret": 1}

    return sub


WRAPPERS = {
    "cors": lambda app: CORSMiddleware(app, allow_origins=["*"]),
    "gzip": lambda app: GZipMiddleware(app),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
async def test_guard_declared_inside_a_middleware_wrapped_mount(wrapper: str) -> None:
    RAN.clear()
    app = FastAPI()
    app.mount("/v2", WRAPPERS[wrapper](guarded_sub_app()))
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/v2/secret")).status_code == 401
        assert RAN == []
        assert (await c.get("/v2/secret", headers=bearer())).status_code == 200


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
async def test_guard_declared_inside_a_middleware_wrapped_host(wrapper: str) -> None:
    RAN.clear()
    app = Starlette(routes=[Host("api.example", WRAPPERS[wrapper](guarded_sub_app()))])
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("http://api.example/secret")).status_code == 401
        assert RAN == []
        assert (await c.get("http://api.example/secret", headers=bearer())).status_code == 200


async def test_deny_mode_covers_a_host_serving_a_bare_app() -> None:
    RAN.clear()
    app = Starlette(routes=[Host("legacy.example", upper_casing_app)])
    install(app, None, settings(unregistered="deny"))
    async with client(app) as c:
        assert (await c.get("http://legacy.example/anything")).status_code == 404
    assert RAN == []


async def test_one_app_mounted_twice_with_a_policy_on_one_prefix() -> None:
    """`guard_router` on `/admin` must not be dropped because `/public` mounts the same app first."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from asgi_guard import guard_router
    from asgi_guard.core.errors import ConfigError

    async def data(request: Request) -> PlainTextResponse:
        return PlainTextResponse("data")

    sub = Starlette(routes=[Route("/data", data)])
    app = Starlette(routes=[Mount("/public", sub), guard_router(Mount("/admin", sub), JobConfig(**JWT))])
    # one route object cannot carry two policies: refused at start-up, never served unguarded
    with pytest.raises(ConfigError, match="two paths with different policies"):
        install(app, None, settings())


@pytest.mark.parametrize("path", ["/files/./secret/a", "/files/x/../secret/a", "/files/secret/a/.."])
async def test_dot_segments_skip_a_narrower_fallback_policy(path: str) -> None:
    """The bare app serves `/files/{p:path}` and normalises the path (Werkzeug's safe_join, os.path):
    a target with dot segments (`curl --path-as-is`, or `%2e%2e`, which the server decodes) must not
    dodge the policy of `/files/secret/{p:path}`."""
    RAN.clear()

    async def files(scope: Any, receive: Any, send: Any) -> None:
        import posixpath

        RAN.append(posixpath.normpath(scope["path"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"file"})

    registry = RouteRegistry()
    registry.register("/files/secret/{p:path}", JobConfig(**JWT))
    app = GuardMiddleware(files, registry=registry, settings=settings())
    assert await raw(app, "GET", "/files/secret/a") == 401
    assert await raw(app, "GET", path) in (400, 401)
    assert RAN == []


async def test_deny_mode_covers_a_routers_default_app() -> None:
    from starlette.routing import Router

    RAN.clear()
    app = Starlette(routes=[Mount("/", app=Router(routes=[], default=upper_casing_app))])
    install(app, None, settings(unregistered="deny"))
    async with client(app) as c:
        response = await c.post("/transfer")
    assert RAN == [] and response.status_code == 404


async def test_route_replaced_in_place_while_serving_is_bound() -> None:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def public(request: Request) -> PlainTextResponse:
        return PlainTextResponse("public")

    @guard(JobConfig(**JWT))
    async def secret(request: Request) -> PlainTextResponse:
        RAN.append("secret")
        return PlainTextResponse("secret")

    RAN.clear()
    app = Starlette(routes=[Route("/page", public)])
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/page")).status_code == 200
        app.router.routes[0] = Route("/page", secret)  # a hot swap
        assert (await c.get("/page")).status_code == 401
    assert RAN == []


def _frontend_app(dist: Any, deny: bool) -> FastAPI:
    from fastapi import APIRouter

    from asgi_guard import guard_router

    app = FastAPI()
    plain = APIRouter()
    plain.frontend("/ui", directory=dist)
    admin = guard_router(APIRouter(), JobConfig(**JWT))
    admin.frontend("/admin", directory=dist)
    app.include_router(plain, prefix="/v1")
    app.include_router(admin, prefix="/v2")
    app.frontend("/", directory=dist)
    install(app, None, settings(unregistered="deny" if deny else "allow"))
    return app


async def test_guard_router_covers_fastapi_frontend_routes(tmp_path: Any) -> None:
    """`guard_router(APIRouter(), policy)` with `router.frontend(...)`: the pages it serves are under
    the router's policy (they were served without it)."""
    (tmp_path / "index.html").write_text("admin console")
    app = _frontend_app(tmp_path, deny=False)
    async with client(app) as c:
        assert (await c.get("/v2/admin/")).status_code == 401
        assert (await c.get("/v2/admin/index.html")).status_code == 401
        assert (await c.get("/v2/admin/", headers=bearer())).text == "admin console"
        assert (await c.get("/v1/ui/")).status_code == 200  # no policy, allow mode


async def test_deny_mode_covers_fastapi_frontend_routes(tmp_path: Any) -> None:
    (tmp_path / "index.html").write_text("page")
    app = _frontend_app(tmp_path, deny=True)
    async with client(app) as c:
        for path in ("/", "/index.html", "/v1/ui/", "/v1/ui/index.html"):
            assert (await c.get(path)).status_code == 404, path
        assert (await c.get("/v2/admin/", headers=bearer())).status_code == 200


async def test_frontend_added_while_serving_is_bound(tmp_path: Any) -> None:
    from fastapi import APIRouter

    from asgi_guard import guard_router

    (tmp_path / "index.html").write_text("page")
    app = FastAPI()
    admin = guard_router(APIRouter(), JobConfig(**JWT))

    @admin.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(admin, prefix="/v2")
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/v2/ping", headers=bearer())).status_code == 200
        admin.frontend("/admin", directory=tmp_path)
        assert (await c.get("/v2/admin/")).status_code == 401
        app.frontend("/", directory=tmp_path)
        assert (await c.get("/index.html")).status_code == 200
