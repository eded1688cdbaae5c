"""The access log and the redaction filter, as captured by a standard logging handler."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import Request
from starlette.responses import JSONResponse
from telemetry_apps import guarded, token, unique

from asgi_guard import JobConfig
from asgi_guard.core.logging import JsonFormatter
from asgi_guard.core.redaction import REDACTED, RedactionFilter, Redactor

APP_LOG = logging.getLogger("asgi_guard.app")  # exists before the stack is built: it gets the filter
PATH = "/jobs/{resource_id}"


def access_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "asgi_guard.access"]


async def test_one_access_event_per_request(
    caplog: pytest.LogCaptureFixture, spans: InMemorySpanExporter, make_client: Any
) -> None:
    caplog.set_level(logging.INFO, logger="asgi_guard")
    route = unique("logged_")
    config = JobConfig(
        endpoint_name=route,
        security={"auth_type_required": "jwt"},
        rate_limit={"enabled": True, "token_bucket": {"rate_limit": 5, "refill_rate": 1}},
    )
    client = make_client(guarded(PATH, config))
    ok = await client.post(
        "/jobs/5", headers={"authorization": f"Bearer {token('dave')}", "x-request-id": "req-1"}
    )
    denied = await client.post("/jobs/5")
    assert (ok.status_code, denied.status_code) == (200, 401)
    first, second = access_events(caplog)
    server = next(s for s in spans.get_finished_spans() if s.name == "POST /jobs/{resource_id}")
    assert first["event"] == "access"
    assert first["request_id"] == "req-1"
    assert first["route"] == PATH and first["route_label"] == route
    assert first["principal"] == "dave"
    assert first["decision"] == "allowed" and first["status"] == 200
    assert first["latency_ms"] > 0
    assert first["decisions"]["rate_limit"]["remaining"] == 4
    assert first["trace_id"] == format(server.context.trace_id, "032x")
    assert second["decision"] == "rejected" and second["status"] == 401
    assert second["rejected_by"] == "security" and second["principal"] is None
    assert second["request_id"] == denied.headers["x-request-id"]


async def test_slow_requests_warn(caplog: pytest.LogCaptureFixture, make_client: Any) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_guard")  # access events off; the warning still comes
    slow = JobConfig(endpoint_name=unique("slow_"), metrics={"threshold_ms": 0.0001})
    fast = JobConfig(endpoint_name=unique("fast_"), metrics={"threshold_ms": 60_000})
    client = make_client(guarded("/slow", slow, extra_routes=[("/fast", fast)]))
    assert (await client.get("/slow")).status_code == 200
    assert (await client.get("/fast")).status_code == 200
    warnings = [r for r in caplog.records if r.name == "asgi_guard.access"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    event = json.loads(warnings[0].getMessage())
    assert event["event"] == "slow_request" and event["route"] == "/slow"
    assert event["latency_ms"] > event["threshold_ms"] == 0.0001


async def test_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture, make_client: Any) -> None:
    """Secrets fed through headers, JSON body fields (nested too) and an exception message."""
    caplog.set_level(logging.DEBUG, logger="asgi_guard")
    jwt_token = token("erin")
    secrets = {
        "jwt": jwt_token,
        "cookie": "sess-7Hq2v9Zr",
        "api_key": "ak_live_51HxYz",
        "secret_value": "hunter2-SECRET-field",
        "password": "pw-nested-0xC0FFEE",
        "card": "4111-1111-1111-1111",
    }

    async def handler(request: Request) -> JSONResponse:
        body = await request.body()
        document = json.loads(body)
        APP_LOG.info(
            "received %s with headers %s",
            body.decode(),
            dict(request.headers),
            extra={"payload": body.decode(), "headers": dict(request.headers), "doc": document},
        )
        try:
            raise ValueError(f"card {document['card']['number']} declined for {document['secret_value']}")
        except ValueError:
            APP_LOG.exception("payment failed; token=%s", request.headers["authorization"])
        raise RuntimeError(f"job failed: secret_value={document['secret_value']} auth={jwt_token}")

    config = JobConfig(
        endpoint_name=unique("secret_"),
        security={"auth_type_required": "jwt"},
        tracing={"function_name": "pay"},
        redact_fields=["secret_value", "card.number"],
    )
    import httpx

    app = guarded("/pay", config, endpoint=handler, methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/pay",
            headers={
                "authorization": f"Bearer {jwt_token}",
                "cookie": f"session={secrets['cookie']}; theme=dark",
                "x-api-key": secrets["api_key"],
            },
            json={
                "item": "book",
                "secret_value": secrets["secret_value"],
                "card": {"number": secrets["card"], "holder": "Erin"},
                "profile": {"credentials": {"password": secrets["password"]}},
            },
        )
    assert response.status_code == 500
    records = [r for r in caplog.records if r.name.startswith("asgi_guard")]
    assert {r.name for r in records} >= {"asgi_guard.app", "asgi_guard.access"}
    outputs = [caplog.text]
    for formatter in (JsonFormatter(), logging.Formatter("%(message)s %(payload)s %(headers)s %(doc)s")):
        for record in records:
            try:
                outputs.append(formatter.format(record))
            except (KeyError, ValueError):
                outputs.append(logging.Formatter().format(record))
        outputs.extend(repr(record.__dict__) for record in records)
    everything = "\n".join(outputs)
    for name, secret in secrets.items():
        assert secret not in everything, f"{name} leaked"
    assert REDACTED in everything
    # What is not secret survives, so the logs stay useful.
    assert "book" in everything and "Erin" in everything and "python-httpx" in everything
    access = [json.loads(r.getMessage()) for r in records if r.name == "asgi_guard.access"]
    assert access[0]["error"].startswith("RuntimeError: job failed: secret_value=")
    assert access[0]["decision"] == "error" and access[0]["principal"] == "erin"


def test_redactor_rules() -> None:
    redactor = Redactor(["secret_value"])
    nested = json.dumps({"a": {"b": [{"Secret_Value": "v1-xyz"}, {"api_key": "v2-xyz", "ok": "fine"}]}})
    assert "v1-xyz" not in redactor.text(nested) and "v2-xyz" not in redactor.text(nested)
    assert "fine" in redactor.text(nested)
    line = "GET / Authorization: Bearer abc.def.ghi123 Cookie: a=1; b=2\nnext line"
    cleaned = redactor.text(line)
    assert "abc.def.ghi123" not in cleaned and "b=2" not in cleaned and "next line" in cleaned
    assert redactor.text("password=hunter2 user=bob") == f"password={REDACTED} user=bob"
    assert redactor.text("{'token': 'tok-123', 'n': 1}") == f"{{'token': '{REDACTED}', 'n': 1}}"
    assert "eyJ" not in redactor.text("sent eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl to upstream")
    assert redactor.value({"tokens_remaining": 3, "access_token": "x"}) == {
        "tokens_remaining": 3,
        "access_token": REDACTED,
    }
    text_in_json = {"body": json.dumps({"user": {"secret_value": "deep-1"}})}
    assert "deep-1" not in json.dumps(redactor.value(text_in_json))


def test_filter_on_a_handler_covers_any_logger(caplog: pytest.LogCaptureFixture) -> None:
    other = logging.getLogger("someone.else")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RedactionFilter(Redactor(["ssn"])))
    other.addHandler(handler)
    try:
        other.warning(
            "user %s", {"ssn": "123-45-6789", "name": "x"}, extra={"headers": {"Authorization": "Basic Zm9v"}}
        )
    finally:
        other.removeHandler(handler)
    (record,) = records
    assert "123-45-6789" not in record.getMessage()
    assert record.headers == {"Authorization": REDACTED}  # type: ignore[attr-defined]
