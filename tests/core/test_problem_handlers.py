"""Opt-in RFC 9457 for the app's own errors: HTTPException, 404/405, validation, unhandled."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, add_problem_handlers, install

SECRET = "problem-handlers-secret-0123456789abcdef"
PROBLEM = "application/problem+json"


class Item(BaseModel):
    name: str
    price: float


def fastapi_app(problem_details: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        if item_id == 418:
            raise HTTPException(418, "short and stout", headers={"X-Teapot": "yes"})
        if item_id == 409:
            raise HTTPException(409, detail={"conflicts_with": [1, 2]})
        if item_id == 500:
            raise RuntimeError("database password is hunter2")
        return {"id": item_id}

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    @app.get("/private")
    async def private() -> dict[str, str]:
        raise HTTPException(404, "no such thing here")

    registry = RouteRegistry()
    registry.register("/private", JobConfig(security={"auth_type_required": "jwt"}), methods=["GET"])
    install(app, registry, GuardSettings(jwt_secret=SECRET, jwt_algorithms=["HS256"]), problem_details=problem_details)
    return app


def client_for(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    return body


async def test_router_404_and_405() -> None:
    async with client_for(fastapi_app()) as client:
        body = problem(await client.get("/nowhere"), 404)
        assert body["title"] == "Not Found" and body["detail"] == "Not Found"
        wrong = await client.delete("/items/1")
        body = problem(wrong, 405)
        assert body["title"] == "Method Not Allowed" and wrong.headers["allow"] == "GET"


async def test_http_exception_detail_headers_and_structured_detail() -> None:
    async with client_for(fastapi_app()) as client:
        teapot = await client.get("/items/418")
        body = problem(teapot, 418)
        assert body["title"] == "I'm a Teapot"
        assert body["detail"] == "short and stout" and teapot.headers["x-teapot"] == "yes"
        body = problem(await client.get("/items/409"), 409)
        assert body["detail"] == "Conflict" and body["errors"] == {"conflicts_with": [1, 2]}


async def test_validation_errors_are_422_problems() -> None:
    async with client_for(fastapi_app()) as client:
        body = problem(await client.post("/items", json={"name": "x", "price": "cheap"}), 422)
        assert [e["loc"] for e in body["errors"]] == [["body", "price"]]
        body = problem(await client.get("/items/not-a-number"), 422)
        assert body["errors"][0]["loc"] == ["path", "item_id"]
        ok = await client.post("/items", json={"name": "x", "price": 1.5})
        assert ok.status_code == 200 and ok.json() == {"name": "x", "price": 1.5}


async def test_unhandled_exception_is_a_generic_500() -> None:
    async with client_for(fastapi_app()) as client:
        response = await client.get("/items/500")
        problem(response, 500)
        assert "hunter2" not in response.text and "RuntimeError" not in response.text
        assert response.headers["cache-control"] == "no-store"


async def test_guarded_route_keeps_guard_problems_and_carries_request_id() -> None:
    async with client_for(fastapi_app()) as client:
        rejected = await client.get("/private")
        assert rejected.status_code == 401 and rejected.headers["content-type"] == PROBLEM
        assert rejected.json()["type"] != "about:blank"  # the guard's own problem type
        token = jwt.encode({"sub": "alice", "exp": 2_000_000_000}, SECRET, algorithm="HS256")
        response = await client.get(
            "/private", headers={"authorization": f"Bearer {token}", "x-request-id": "req-42"}
        )
        body = problem(response, 404)
        assert body["detail"] == "no such thing here" and body["request_id"] == "req-42"
        assert response.headers["x-request-id"] == "req-42"


async def test_off_by_default() -> None:
    async with client_for(fastapi_app(problem_details=False)) as client:
        response = await client.get("/nowhere")
        assert response.status_code == 404 and response.headers["content-type"] == "application/json"
        assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("unhandled", [True, False])
async def test_plain_starlette_app(unhandled: bool) -> None:
    async def boom(request: Any) -> PlainTextResponse:
        raise ValueError("boom")

    app = Starlette(routes=[Route("/boom", boom)])
    add_problem_handlers(app, unhandled=unhandled)
    async with client_for(app) as client:
        problem(await client.get("/missing"), 404)
        response = await client.get("/boom")
        assert response.status_code == 500
        assert (response.headers["content-type"] == PROBLEM) is unhandled
