"""Every way a request used to reach a guarded handler unguarded (or be charged without running one),
against Starlette and FastAPI apps: the router decides, the guard runs exactly that route's policy."""

from __future__ import annotations

from typing import Any

import pytest
from bindkit import JWT, bearer, charging, client, settings
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from asgi_guard import JobConfig, RouteRegistry, install

RAN: list[str] = []


async def handler(request: Request) -> JSONResponse:
    RAN.append(request.url.path)
    return JSONResponse({"params": {k: str(v) for k, v in request.path_params.items()}})


class AnyMethod:
    """A class endpoint: Starlette routes every method to it (QUERY included)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        RAN.append(scope["path"])
        await PlainTextResponse("searched")(scope, receive, send)


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    RAN.clear()
    with charging() as charges:
        yield charges


def reg(*entries: tuple[str, list[str] | None]) -> RouteRegistry:
    registry = RouteRegistry()
    for path, methods in entries:
        registry.register(path, JobConfig(**JWT), methods=methods)
    return registry


def starlette_app(**kw: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/jobs/{rid}", handler, methods=["GET", "POST"]),
            Route("/admin", handler),
            Route("/files/{p:path}", handler),
            Route("/search", AnyMethod()),
            Route("/open", handler),
        ],
        **kw,
    )


def fastapi_app(**kw: Any) -> FastAPI:
    app = FastAPI(**kw)

    async def job(rid: str, request: Request) -> dict[str, str]:
        RAN.append(request.url.path)
        return {"rid": rid}

    async def plain(request: Request) -> dict[str, str]:
        RAN.append(request.url.path)
        return {}

    async def files(p: str, request: Request) -> dict[str, str]:
        RAN.append(request.url.path)
        return {"p": p}

    app.add_api_route("/jobs/{rid}", job, methods=["GET", "POST"])
    app.add_api_route("/admin", plain, methods=["GET"])
    app.add_api_route("/files/{p:path}", files, methods=["GET"])
    app.add_api_route("/search", plain, methods=["QUERY", "GET"])
    app.add_api_route("/open", plain, methods=["GET"])
    return app


GUARDED = (("/jobs/{rid}", None), ("/admin", None), ("/files/{p:path}", None), ("/search", None))
APPS = {"starlette": starlette_app, "fastapi": fastapi_app}


@pytest.fixture(params=sorted(APPS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_root_path_by_app_setting(kind: str, _fresh: list[Any]) -> None:
    app = APPS[kind](root_path="/api") if kind == "fastapi" else APPS[kind]()
    install(app, reg(*GUARDED), settings())
    async with client(app, root_path="" if kind == "fastapi" else "/api") as c:
        for path in ("/api/jobs/1", "/api/admin"):
            assert (await c.get(path)).status_code == 401, path
        assert RAN == []
        assert (await c.get("/api/jobs/1", headers=bearer())).status_code == 200
        assert RAN == ["/api/jobs/1"] and len(_fresh) == 3


@pytest.mark.parametrize(
    "target",
    [
        "/admin%0A",
        "/admin%0D",
        "/jobs/1%0A",
        "/jobs/1%2F2",
        "//admin",
        "/files/",
        "/files",
        "/files/a/b",
        "/admin/",
    ],
)
async def test_odd_targets_never_reach_a_guarded_handler_unguarded(
    kind: str, target: str, _fresh: list[Any]
) -> None:
    app = APPS[kind]()
    install(app, reg(*GUARDED), settings())
    async with client(app) as c:
        response = await c.get(target)
        assert RAN == [], (target, response.status_code)
        assert response.status_code in (401, 404, 307), (target, response.status_code)
        if response.status_code == 401:
            _fresh.clear()
        assert _fresh == []  # a 401 is the policy running; the 404/307 of the router charge nothing
        before = len(_fresh)
        # what the app runs with a token, the guard charged exactly once; what it does not, not at all
        await c.get(target, headers=bearer(), follow_redirects=True)
        charged = len(_fresh) - before
        assert charged == len(RAN) and len(RAN) <= 1, (target, RAN, _fresh)


async def test_files_path_param_with_and_without_slash(kind: str, _fresh: list[Any]) -> None:
    app = APPS[kind]()
    install(app, reg(*GUARDED), settings())
    async with client(app) as c:
        assert (await c.get("/files/")).status_code == 401
        redirect = await c.get("/files")
        assert redirect.status_code in (307, 401)
        assert RAN == []
        served = await c.get("/files/", headers=bearer())
        assert served.status_code == 200 and RAN == ["/files/"]


async def test_unknown_method_on_an_every_method_route(kind: str, _fresh: list[Any]) -> None:
    app = APPS[kind]()
    install(app, reg(*GUARDED), settings())
    async with client(app) as c:
        assert (await c.request("QUERY", "/search")).status_code == 401
        assert RAN == []
        assert (await c.request("QUERY", "/search", headers=bearer())).status_code == 200
        assert RAN == ["/search"]


async def test_head_on_get_only_route_is_not_charged(_fresh: list[Any]) -> None:
    app = fastapi_app()
    install(app, reg(("/open", ["GET"])), settings())
    async with client(app) as c:
        response = await c.head("/open", headers=bearer())
        assert response.status_code == 405 and _fresh == [] and RAN == []
        assert (await c.get("/open", headers=bearer())).status_code == 200
        assert len(_fresh) == 1


async def test_trailing_slash_redirect_is_charged_once(kind: str, _fresh: list[Any]) -> None:
    app = APPS[kind]()
    install(app, reg(*GUARDED), settings())
    async with client(app) as c:
        first = await c.post("/jobs/1/", headers=bearer())
        assert first.status_code == 307 and _fresh == [] and RAN == []
        followed = await c.post("/jobs/1/", headers=bearer(), follow_redirects=True)
        assert followed.status_code == 200 and len(_fresh) == 1 and RAN == ["/jobs/1"]


async def test_method_not_allowed_is_not_charged(kind: str, _fresh: list[Any]) -> None:
    app = APPS[kind]()
    install(app, reg(*GUARDED), settings())
    async with client(app) as c:
        assert (await c.delete("/jobs/1", headers=bearer())).status_code == 405
        assert _fresh == [] and RAN == []


async def test_route_precedence_is_the_routers(_fresh: list[Any]) -> None:
    async def me(request: Request) -> JSONResponse:
        RAN.append("me")
        return JSONResponse({})

    app = Starlette(routes=[Route("/users/{uid}", handler), Route("/users/me", me)])
    registry = RouteRegistry()
    registry.register("/users/{uid}", JobConfig(endpoint_name="by_uid", **JWT))
    registry.register("/users/me", JobConfig(endpoint_name="me"))
    install(app, registry, settings())
    async with client(app) as c:
        assert (await c.get("/users/me")).status_code == 401  # Starlette serves /users/{uid}: its policy
        assert (await c.get("/users/me", headers=bearer())).status_code == 200
        assert [c[0] for c in _fresh] == ["by_uid", "by_uid"] and RAN == ["/users/me"]


async def test_mounted_sub_app_with_its_own_guard(_fresh: list[Any]) -> None:
    sub = starlette_app()
    install(sub, reg(*GUARDED), settings())
    app = Starlette(routes=[Mount("/v1", sub)])
    async with client(app) as c:
        for _ in range(3):
            assert (await c.get("/v1/jobs/1")).status_code == 401
        assert RAN == []
        assert (await c.get("/v1/jobs/1", headers=bearer())).status_code == 200


@pytest.mark.parametrize("depth", [1, 2])
async def test_guard_on_parent_binds_through_mounts(depth: int, _fresh: list[Any]) -> None:
    inner: Any = [Route("/jobs/{rid}", handler)]
    prefix = ""
    for level in range(depth):
        inner = [Mount(f"/m{level}", routes=inner)]
        prefix = f"/m{level}" + prefix
    app = Starlette(routes=inner)
    install(app, reg((prefix + "/jobs/{rid}", None)), settings())
    async with client(app) as c:
        assert (await c.get(prefix + "/jobs/7")).status_code == 401
        ok = await c.get(prefix + "/jobs/7", headers=bearer())
        assert ok.status_code == 200 and ok.json() == {"params": {"rid": "7"}}


async def test_included_routers_with_prefixes(_fresh: list[Any]) -> None:
    app = FastAPI()
    outer, inner = APIRouter(prefix="/outer"), APIRouter(prefix="/inner")

    @inner.get("/jobs/{rid}")
    async def job(rid: str) -> dict[str, str]:
        RAN.append(rid)
        return {"rid": rid}

    outer.include_router(inner, prefix="/mid")
    app.include_router(outer, prefix="/v1")
    install(app, reg(("/v1/outer/mid/inner/jobs/{rid}", ["GET"])), settings())
    async with client(app) as c:
        assert (await c.get("/v1/outer/mid/inner/jobs/3")).status_code == 401
        assert (await c.get("/v1/outer/mid/inner/jobs/3", headers=bearer())).status_code == 200
        assert RAN == ["3"] and len(_fresh) == 2


async def test_routes_included_after_install_are_bound(_fresh: list[Any]) -> None:
    app = FastAPI()
    router = APIRouter()
    install(app, reg(("/late/{rid}", ["GET"])), settings())

    @router.get("/late/{rid}")
    async def late(rid: str) -> dict[str, str]:
        RAN.append(rid)
        return {}

    app.include_router(router)
    async with client(app) as c:
        assert (await c.get("/late/1")).status_code == 401
        extra = APIRouter()

        @extra.get("/later/{rid}")
        async def later(rid: str) -> dict[str, str]:
            RAN.append(rid)
            return {}

        from asgi_guard import guard

        guard(JobConfig(**JWT))(later)
        router.include_router(extra)  # a route added while serving: bound before it is served
        assert (await c.get("/later/2")).status_code == 401
        assert RAN == []


async def test_deny_mode_denies_undeclared_routes_and_never_echoes_the_path(
    kind: str, _fresh: list[Any]
) -> None:
    app = APPS[kind]()
    install(app, reg(*GUARDED), settings(unregistered="deny"))
    async with client(app) as c:
        denied = await c.get("/open?<script>")
        assert denied.status_code == 404 and denied.headers["content-type"] == "application/problem+json"
        assert "/open" not in denied.text and "script" not in denied.text
        assert denied.json()["request_id"] == denied.headers["x-request-id"]
        assert RAN == []
        assert (await c.get("/nowhere")).status_code == 404 and _fresh == []


async def test_request_id_on_the_apps_own_500(_fresh: list[Any]) -> None:
    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("handler bug")

    app = Starlette(routes=[Route("/boom", boom)])
    install(app, reg(("/boom", None)), settings())
    async with client(app) as c:
        response = await c.get("/boom", headers={**bearer(), "X-Request-ID": "trace-500"})
        assert response.status_code == 500
        assert response.headers["x-request-id"] == "trace-500"
        assert response.json()["request_id"] == "trace-500"


async def test_host_routes_are_bound(_fresh: list[Any]) -> None:
    from starlette.routing import Host, Router

    app = Starlette(routes=[Host("api.example", app=Router(routes=[Route("/jobs/{rid}", handler)]))])
    install(app, reg(("/jobs/{rid}", None)), settings())
    async with client(app) as c:
        assert (await c.get("http://api.example/jobs/1")).status_code == 401
        assert (await c.get("http://api.example/jobs/1", headers=bearer())).status_code == 200
        assert RAN == ["/jobs/1"]


async def test_fastapi_sub_app_mounted_with_its_own_guard(_fresh: list[Any]) -> None:
    sub = fastapi_app()
    install(sub, reg(*GUARDED), settings())
    app = FastAPI()
    app.mount("/v1", sub)
    async with client(app) as c:
        for _ in range(3):
            assert (await c.get("/v1/jobs/1")).status_code == 401
        assert RAN == []
        assert (await c.get("/v1/jobs/1", headers=bearer())).status_code == 200
