"""schemathesis against the example app's OpenAPI schema, with the whole stack mounted, in-process.

Every operation of examples/fastapi_app.py, positive and negative data, a valid development token
(scope, roles, MFA) on every call: never a 5xx, never a 2xx for data the schema refuses, and every
answer carries X-Request-ID (problem+json bodies the same id). Bounded examples per operation
(ASGI_GUARD_FUZZ_EXAMPLES for more).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import negative_data_rejection  # noqa: E402

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
_ON_DEMAND = os.environ.get("ASGI_GUARD_FUZZ_EXAMPLES")
EXAMPLES = int(_ON_DEMAND or 60)


def _load_example() -> Any:
    """examples/fastapi_app.py on the embedded backend, whatever this shell's ASGI_GUARD_* say."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("ASGI_GUARD_")}
    try:
        spec = importlib.util.spec_from_file_location(
            "fastapi_app_schemathesis", ROOT / "examples" / "fastapi_app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        os.environ.update(saved)
    return module


example = _load_example()
schema = schemathesis.openapi.from_asgi("/openapi.json", example.app)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
TOKEN = example.dev_token()
STATUSES: Counter[tuple[str, int]] = Counter()  # (method, status) over the run, for the coverage check
_granted = False


def _grant_once() -> None:
    """Start the stack (first request) and give the demo user enough credits for every example."""
    global _granted
    if _granted:
        return
    from asgi_guard.stages.credits import credit_store

    async def grant() -> None:
        await example.runtime.startup()
        subject = jwt.decode(TOKEN, options={"verify_signature": False})["sub"]  # whom dev_token() names
        await credit_store(example.runtime.backend).grant(subject, 10**6)

    asyncio.run(grant())
    _granted = True


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=_ON_DEMAND is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_example_app_schema_with_the_stack(case: Any) -> None:
    _grant_once()
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, negative_data_rejection],
    )
    STATUSES[(case.method.upper(), response.status_code)] += 1
    ids = response.headers.get("x-request-id") or []
    ids = [ids] if isinstance(ids, str) else ids
    if case.method.upper() not in ("GET", "HEAD", "POST"):
        return  # a method no policy is registered for (TRACE, ...) passes through untouched
    assert len(ids) == 1, f"{case.method} {case.formatted_path}: {response.status_code} X-Request-ID {ids}"
    if response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        assert response.json().get("request_id") == ids[0]


def test_schemathesis_reached_the_handlers() -> None:
    """The run above was not all 401/429: both operations got through the whole stack (2xx) and
    were refused for bad data (4xx), so the checks judged real handler and guard answers."""
    if not STATUSES:
        pytest.skip("run together with test_example_app_schema_with_the_stack")
    for method in ("GET", "POST"):
        codes = {status for (m, status), n in STATUSES.items() if m == method}
        assert any(200 <= c < 300 for c in codes), f"{method}: no 2xx among {sorted(codes)}"
    print(dict(sorted(STATUSES.items())))
