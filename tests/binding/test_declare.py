"""Policies declared next to the route: @guard, router-level defaults (APIRouter, Mount), the registry
and TOML; all end in one frozen JobConfig per route. Binding errors name the template."""

from __future__ import annotations

from typing import Any

import pytest
from bindkit import JWT, bearer, charging, client, settings
from fastapi import APIRouter, FastAPI, Request
from guardkit import UNCROSSED_WINDOW
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from asgi_guard import ConfigError, JobConfig, RouteRegistry, get_guard, guard, guard_router, install

LIMIT = {"enabled": True, "algo": "fixed_window", "fixed_window": {"limit": 5, "window": UNCROSSED_WINDOW}}


async def show(request: Any) -> JSONResponse:
    ctx = get_guard(request)
    assert ctx is not None
    config = ctx.route.config
    return JSONResponse(
        {
            "label": ctx.route.label,
            "jwt": config.security.auth_type_required,
            "credits": config.required_credits,
            "limit": config.rate_limit.enabled,
        }
    )


async def test_decorator_on_fastapi_endpoint_either_order() -> None:
    app = FastAPI()

    @app.get("/a/{rid}")
    @guard(JobConfig(endpoint_name="a", **JWT))
    async def a(rid: str, request: Request) -> Any:
        return await show(request)

    @guard(endpoint_name="b", rate_limit=LIMIT)
    @app.get("/b")
    async def b(request: Request) -> Any:
        return await show(request)

    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/a/1")).status_code == 401
        assert (await c.get("/a/1", headers=bearer())).json()["label"] == "a"
        got = await c.get("/b")
        assert got.json() == {"label": "b", "jwt": None, "credits": 0, "limit": True}
        assert "ratelimit" in got.headers


async def test_router_defaults_inherited_and_overridden_per_route() -> None:
    app = FastAPI()
    router = guard_router(APIRouter(prefix="/v1"), JobConfig(required_credits=0, **JWT, rate_limit=LIMIT))

    @router.get("/plain")
    async def plain(request: Request) -> Any:
        return await show(request)

    @router.get("/special")
    @guard(endpoint_name="special", rate_limit={"enabled": False})
    async def special(request: Request) -> Any:
        return await show(request)

    app.include_router(router)
    install(app, None, settings())
    async with client(app) as c:
        assert (await c.get("/v1/plain")).status_code == 401
        assert (await c.get("/v1/special")).status_code == 401  # still inherits JWT
        assert (await c.get("/v1/plain", headers=bearer())).json() == {
            "label": "/v1/plain",
            "jwt": "jwt",
            "credits": 0,
            "limit": True,
        }
        special_body = (await c.get("/v1/special", headers=bearer())).json()
        assert special_body == {"label": "special", "jwt": "jwt", "credits": 0, "limit": False}


async def test_mount_defaults_for_starlette() -> None:
    mount = guard_router(
        Mount("/admin", routes=[Route("/users", show), Route("/stats", show)]), JobConfig(**JWT)
    )
    app = Starlette(routes=[mount, Route("/public", show)])
    registry = RouteRegistry()
    registry.register("/admin/stats", JobConfig(endpoint_name="stats", required_credits=0), methods=["GET"])
    registry.register("/public", JobConfig(endpoint_name="public"))
    install(app, registry, settings())
    async with client(app) as c:
        assert (await c.get("/admin/users")).status_code == 401
        assert (
            await c.get("/admin/stats")
        ).status_code == 401  # registry entry merged over the mount's default
        assert (await c.get("/admin/stats", headers=bearer())).json()["label"] == "stats"
        assert (await c.get("/public")).json()["label"] == "public"


def test_decorator_and_registry_on_one_route_is_an_error() -> None:
    @guard(JobConfig(**JWT))
    async def twice(request: Any) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/twice", twice)])
    registry = RouteRegistry()
    registry.register("/twice", JobConfig())
    with pytest.raises(ConfigError, match="/twice"):
        install(app, registry, settings())


def test_bad_decorator_config_fails_at_import_time() -> None:
    with pytest.raises(ConfigError, match="@guard on .*nope"):

        @guard(rate_limit={"enabled": True, "algo": "no-such-algo"})
        async def nope(request: Any) -> None:
            return None


@pytest.mark.parametrize(
    ("template", "methods"), [("/job/{rid}", ["GET"]), ("/jobs/{rid}", ["DELETE"]), ("/jobs", None)]
)
async def test_unbound_registry_entry_is_a_config_error_naming_it(template: str, methods: Any) -> None:
    app = Starlette(routes=[Route("/jobs/{rid}", show, methods=["GET"])])
    registry = RouteRegistry()
    registry.register(template, JobConfig(), methods=methods, name="typo_route")
    guard_obj = install(app, registry, settings())  # routes may still be added: checked at start-up
    with pytest.raises(ConfigError, match="typo_route"):
        guard_obj.bind()
    async with client(app) as c:  # and the first request cannot be served either
        assert (await c.get("/jobs/1")).status_code == 500


def test_convertor_spelling_does_not_matter_for_binding() -> None:
    app = Starlette(routes=[Route("/jobs/{rid:int}", show)])
    registry = RouteRegistry()
    registry.register("/jobs/{rid}", JobConfig(**JWT))
    install(app, registry, settings()).bind()


async def test_toml_extends_still_binds(tmp_path: Any) -> None:
    (tmp_path / "routes.toml").write_text(
        """
[bases.authenticated]
security.auth_type_required = "jwt"

[routes.status]
path = "/jobs/{rid}"
methods = ["GET"]
extends = "authenticated"
endpoint_name = "status"
"""
    )
    app = Starlette(routes=[Route("/jobs/{rid}", show)])
    install(app, RouteRegistry.from_file(tmp_path / "routes.toml"), settings())
    async with client(app) as c:
        assert (await c.get("/jobs/1")).status_code == 401
        assert (await c.get("/jobs/1", headers=bearer())).json()["label"] == "status"


async def test_same_router_included_twice_same_policy_is_fine() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/x")
    @guard(JobConfig(**JWT))
    async def x() -> dict[str, str]:
        return {}

    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2")
    install(app, None, settings())
    with charging():
        async with client(app) as c:
            assert (await c.get("/v1/x")).status_code == 401
            assert (await c.get("/v2/x")).status_code == 401


def test_routes_the_apps_lifespan_adds_are_bound_at_start_up() -> None:
    from contextlib import asynccontextmanager

    from starlette.testclient import TestClient

    late = APIRouter()

    @late.get("/late/{rid}")
    async def late_job(rid: str) -> dict[str, str]:
        return {"rid": rid}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.include_router(late, prefix="/v2")
        yield

    app = FastAPI(lifespan=lifespan)
    registry = RouteRegistry()
    registry.register("/v2/late/{rid}", JobConfig(**JWT), methods=["GET"], name="late")
    install(app, registry, settings())  # the route does not exist yet: no error before start-up
    with TestClient(app) as tc:
        assert tc.get("/v2/late/1").status_code == 401
        assert tc.get("/v2/late/1", headers=bearer()).status_code == 200
        assert tc.get("/metrics").status_code == 200  # the outer part still answers the metrics path


def test_start_up_fails_when_a_template_matches_no_route() -> None:
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/jobs/{rid}", show)])
    registry = RouteRegistry()
    registry.register("/jobz/{rid}", JobConfig(), name="typo")
    install(app, registry, settings())
    with pytest.raises(BaseException) as failed, TestClient(app):
        pass
    assert "typo" in str(failed.value)


async def test_deny_mode_with_fastapi_docs_routes_registered() -> None:
    app = FastAPI()

    @app.get("/jobs/{rid}")
    @guard(JobConfig(**JWT))
    async def job(rid: str) -> dict[str, str]:
        return {"rid": rid}

    registry = RouteRegistry()
    registry.register("/openapi.json", JobConfig(), methods=["GET"])
    install(app, registry, settings(unregistered="deny"))
    async with client(app) as c:
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/docs")).status_code == 404  # not declared: denied
        assert (await c.get("/jobs/1")).status_code == 401
