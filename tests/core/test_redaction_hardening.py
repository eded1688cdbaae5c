"""Hardening (issue 13, case 9): X-MFA-TOTP, Cookie, Authorization and X-API-Key (a configurable list
of headers) are redacted everywhere in logs: by header line, by key, and by literal value."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from guardkit import client, guarded_app
from starlette.requests import Request
from starlette.responses import Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.core.redaction import DEFAULT_REDACT_HEADERS, REDACTED, Redactor

CODE = "493817"


@pytest.mark.parametrize("header", ["X-MFA-TOTP", "Cookie", "Authorization", "X-API-Key"])
def test_each_default_header_is_redacted_by_line_key_and_value(header: str) -> None:
    redactor = Redactor()
    assert header.lower() in DEFAULT_REDACT_HEADERS
    assert CODE not in redactor.text(f"{header}: {CODE}")
    assert redactor.value({header: CODE}) == {header: REDACTED}
    assert CODE not in redactor.text(f"headers={{'{header.lower()}': '{CODE}'}}")
    scope = {"headers": [(header.lower().encode(), CODE.encode())]}
    assert CODE in redactor.request_secrets(scope)


def test_the_header_list_is_configurable() -> None:
    redactor = Redactor(headers=["x-tenant-secret"])
    assert CODE not in redactor.text(f"X-Tenant-Secret: {CODE}")
    assert redactor.value({"x-tenant-secret": CODE}) == {"x-tenant-secret": REDACTED}
    assert (
        "x-tenant-secret" in GuardSettings(_env_file=None, redact_headers=["x-tenant-secret"]).redact_headers
    )  # type: ignore[call-arg]


async def test_a_totp_code_in_an_exception_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request) -> Response:
        raise RuntimeError(f"step-up failed for code {request.headers['x-mfa-totp']}")

    # metrics_collect: the telemetry stage (which logs handler errors) runs only with somewhere to report
    settings = GuardSettings(_env_file=None, metrics_collect=True)  # type: ignore[call-arg]
    app = guarded_app(handler, JobConfig(endpoint_name="mfa_log"), settings=settings)
    caplog.set_level(logging.DEBUG)
    async with client(app) as http:
        response = await http.get("/job", headers={"x-mfa-totp": CODE})
    assert response.status_code == 500
    logged: list[Any] = [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    assert any("step-up failed" in line for line in logged)
    assert not any(CODE in line for line in logged), logged
