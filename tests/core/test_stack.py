"""Stage 0 and mounting: both styles on Starlette and FastAPI, request ids, pass-through, deny,
problem+json, body limit and replay, lifespan hooks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry, get_guard, install


async def echo(request: Request) -> JSONResponse:
    guard = request.state.guard
    body = await request.body()
    return JSONResponse(
        {
            "route": guard.route.template,
            "params": {k: str(v) for k, v in guard.path_params.items()},
            "resource_id": guard.resource_id,
            "request_id": guard.request_id,
            "body": body.decode(),
            "same": get_guard(request) is guard,
        }
    )


async def free(request: Request) -> JSONResponse:
    return JSONResponse({"guard": getattr(request.state, "guard", None) is not None})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        for i in range(3):
            yield f"chunk{i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/jobs/{resource_id}", echo, methods=["POST"]),
            Route("/by-body", echo, methods=["POST"]),
            Route("/free", free),
            Route("/stream", stream),
        ]
    )


def registry() -> RouteRegistry:
    reg = RouteRegistry()
    reg.register("/jobs/{resource_id}", JobConfig(endpoint_name="io_job"), methods=["POST"])
    reg.register("/by-body", JobConfig(resource_id_from_body=True, max_body_size=64), methods=["POST"])
    reg.register("/stream", JobConfig())
    return reg


@pytest.fixture(params=["install", "add_middleware"])
def app(request: pytest.FixtureRequest) -> Starlette:
    application = starlette_app()
    settings = GuardSettings(_env_file=None)  # type: ignore[call-arg]
    if request.param == "install":
        install(application, registry(), settings)
    else:
        application.add_middleware(GuardMiddleware, registry=registry(), settings=settings)
    return application


async def test_registered_route_gets_context_and_request_id(app: Starlette, make_client: Any) -> None:
    client = make_client(app)
    response = await client.post("/jobs/42", content=b"hello")
    assert response.status_code == 200
    data = response.json()
    assert data["route"] == "/jobs/{resource_id}"
    assert data["params"] == {"resource_id": "42"} and data["resource_id"] == "42"
    assert data["body"] == "hello" and data["same"] is True
    generated = response.headers["x-request-id"]
    assert len(generated) == 32 and generated == data["request_id"]


async def test_incoming_request_id_is_kept_and_garbage_replaced(app: Starlette, make_client: Any) -> None:
    client = make_client(app)
    kept = await client.post("/jobs/1", headers={"X-Request-ID": "trace-abc.123"})
    assert kept.headers["x-request-id"] == "trace-abc.123"
    too_long = await client.post("/jobs/1", headers={"X-Request-ID": "a" * 129})
    assert too_long.headers["x-request-id"] != "a" * 129 and len(too_long.headers["x-request-id"]) == 32
    spaced = await client.post("/jobs/1", headers={"X-Request-ID": "has space"})
    assert spaced.headers["x-request-id"] != "has space"


async def test_unregistered_routes_pass_through_untouched(app: Starlette, make_client: Any) -> None:
    response = await make_client(app).get("/free")
    assert response.status_code == 200
    assert response.json() == {"guard": False}
    assert "x-request-id" not in response.headers


async def test_unregistered_routes_denied_when_configured(make_client: Any) -> None:
    application = starlette_app()
    install(application, registry(), GuardSettings(unregistered="deny", _env_file=None))  # type: ignore[call-arg]
    response = await make_client(application).get("/free")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("route-not-registered")
    assert problem["status"] == 404 and problem["title"] and problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_body_limit_is_413_problem(app: Starlette, make_client: Any) -> None:
    response = await make_client(app).post("/by-body", content=b"x" * 65)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) >= {"type", "title", "status", "detail", "request_id"}
    assert problem["status"] == 413 and problem["request_id"] == response.headers["x-request-id"]


async def test_body_is_read_once_and_replayed(app: Starlette, make_client: Any) -> None:
    payload = json.dumps({"resource_id": "from-body", "x": 1})
    response = await make_client(app).post("/by-body", content=payload)
    assert response.status_code == 200
    assert response.json()["resource_id"] == "from-body"
    assert response.json()["body"] == payload


async def test_broken_json_is_400_not_500(app: Starlette, make_client: Any) -> None:
    response = await make_client(app).post("/by-body", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["type"].endswith("malformed-json")


async def test_streaming_response_passes_through(app: Starlette, make_client: Any) -> None:
    response = await make_client(app).get("/stream")
    assert response.status_code == 200
    assert response.text == "chunk0\nchunk1\nchunk2\n"
    assert "x-request-id" in response.headers


class ExamplePayload(BaseModel):
    resource_id: str
    other_data: str = ""


def fastapi_app(style: str) -> FastAPI:
    application = FastAPI()

    @application.post("/jobs/{resource_id}")
    async def io_job(resource_id: str, payload: ExamplePayload, request: Request) -> dict[str, Any]:
        guard = get_guard(request)
        assert guard is not None
        return {"resource_id": resource_id, "label": guard.route.label, "payload": payload.model_dump()}

    reg = RouteRegistry()
    reg.register("/jobs/{resource_id}", JobConfig(endpoint_name="io_job"), methods=["POST"])
    settings = GuardSettings(_env_file=None)  # type: ignore[call-arg]
    if style == "install":
        install(application, reg, settings)
    else:
        application.add_middleware(GuardMiddleware, registry=reg, settings=settings)
    return application


@pytest.mark.parametrize("style", ["install", "add_middleware"])
async def test_fastapi_both_styles(style: str, make_client: Any) -> None:
    client = make_client(fastapi_app(style))
    response = await client.post("/jobs/7", json={"resource_id": "7", "other_data": "x"})
    assert response.status_code == 200
    assert response.json() == {
        "resource_id": "7",
        "label": "io_job",
        "payload": {"resource_id": "7", "other_data": "x"},
    }
    assert "x-request-id" in response.headers
    # FastAPI's own validation still answers for its routes
    bad = await client.post("/jobs/7", json={"nope": 1})
    assert bad.status_code == 422


async def test_lifespan_runs_startup_and_shutdown_hooks() -> None:
    events: list[str] = []
    application = starlette_app()
    middleware = GuardMiddleware(application, registry=registry(), settings=GuardSettings(_env_file=None))  # type: ignore[call-arg]

    async def started() -> None:
        events.append("start")

    async def stopped() -> None:
        events.append("stop")

    middleware.runtime.on_startup(started)
    middleware.runtime.on_shutdown(stopped)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert events == ["start", "stop"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_install_names_a_settings_object_passed_as_the_registry() -> None:
    """`install(app, GuardSettings())` (easy with @guard-only apps) failed deep inside with an
    AttributeError; it now says which argument goes where (found by a newcomer)."""
    from starlette.applications import Starlette

    from asgi_guard import GuardSettings, install

    with pytest.raises(TypeError, match="registry must be a RouteRegistry or None, not GuardSettings"):
        install(Starlette(), GuardSettings(_env_file=None))  # type: ignore[arg-type, call-arg]
