"""/openapi.json of examples/fastapi_app.py: the bearer scheme, per-operation security with scopes, and
the problem+json responses (with their headers) each guarded route can give."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from bindkit import client

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_app.py"


@pytest.fixture(scope="module")
def example() -> Any:
    spec = importlib.util.spec_from_file_location("bind_example_fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_schema_lists_bearer_scheme_and_problem_responses(example: Any) -> None:
    async with client(example.app) as c:
        schema = (await c.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["asgiGuardBearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}

    post = schema["paths"]["/jobs/{resource_id}"]["post"]
    assert post["security"] == [{"asgiGuardBearer": ["jobs:write"]}]
    responses = post["responses"]
    for status in ("400", "401", "402", "403", "413", "429", "503"):
        assert "application/problem+json" in responses[status]["content"], status
    assert {"Retry-After", "RateLimit"} <= set(responses["429"]["headers"])
    assert "WWW-Authenticate" in responses["401"]["headers"]
    assert "X-Request-ID" in responses["401"]["headers"]
    assert {"RateLimit", "X-Credits-Remaining", "X-Request-ID"} <= set(responses["200"]["headers"])
    assert "422" in responses  # FastAPI's own validation answer is kept
    assert post["x-asgi-guard"]["roles"] == ["admin", "db_user"] and post["x-asgi-guard"]["mfa"] is True

    get = schema["paths"]["/jobs/{resource_id}"]["get"]
    assert get["security"] == [{"asgiGuardBearer": []}]
    assert "402" not in get["responses"] and "429" not in get["responses"]


async def test_unguarded_operations_stay_as_they_were() -> None:
    from fastapi import FastAPI

    from asgi_guard import install

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    install(app)
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "asgiGuardBearer" not in schema.get("components", {}).get("securitySchemes", {})


def test_schemathesis_finds_every_guard_answer_documented(example: Any) -> None:
    """A schema-driven client calls each operation (without a token, with made-up bodies): every status
    the app answers, the guard's 401/403/413/422/429 included, is in the document."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import status_code_conformance

    schema = schemathesis.openapi.from_asgi("/openapi.json", example.app)
    failures: list[tuple[str, int, str]] = []
    seen: set[int] = set()

    def check(operation: Any) -> None:
        @given(operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: Any) -> None:
            response = case.call()
            seen.add(response.status_code)
            try:
                case.validate_response(response, checks=(status_code_conformance, not_a_server_error))
            except Exception as exc:
                failures.append((operation.label, response.status_code, str(exc)[:300]))

        call()

    for result in schema.get_all_operations():
        check(result.ok())
    assert failures == []
    assert 401 in seen


async def test_a_routes_policy_annotates_only_the_methods_it_serves() -> None:
    """Two routes at one path: the guarded GET route's policy is not claimed for the POST route."""
    from bindkit import JWT, settings
    from fastapi import FastAPI

    from asgi_guard import JobConfig, guard, install

    app = FastAPI()

    @app.get("/items/{rid}")
    @guard(JobConfig(**JWT))
    async def read(rid: str) -> dict[str, str]:
        return {}

    @app.post("/items/{rid}")
    async def write(rid: str) -> dict[str, str]:
        return {}

    install(app, None, settings())
    async with client(app) as c:
        item = (await c.get("/openapi.json")).json()["paths"]["/items/{rid}"]
    assert item["get"]["security"] == [{"asgiGuardBearer": []}]
    assert "security" not in item["post"] and "401" not in item["post"]["responses"]
