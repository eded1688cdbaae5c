"""Spans, as an SDK exporter sees them: names, parents and attributes of each kind of request.

By default a request makes one server span carrying each stage's decision as attributes; the tests
that look at per-stage child spans turn `tracing.stage_spans` on (`full_config`, `stage_spans=True`).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.requests import Request
from starlette.responses import JSONResponse
from telemetry_apps import guarded, token, unique

from asgi_guard import JobConfig
from asgi_guard.core.context import get_guard
from asgi_guard.core.problems import Problem
from asgi_guard.core.stage import Stage
from asgi_guard.core.tracing import extract_trace_context, inject_trace_context

PATH = "/jobs/{resource_id}"


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found: dict[str, ReadableSpan] = {}
    for span in spans.get_finished_spans():
        assert span.name not in found, f"two spans called {span.name}"
        found[span.name] = span
    return found


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def full_config(stage_spans: bool = True, **extra: Any) -> JobConfig:
    return JobConfig(
        endpoint_name=unique("jobs_"),
        tracing={"function_name": "run_job", "trace_label": "io", "stage_spans": stage_spans},
        metrics={"histogram_name": unique("job_seconds_")},
        security={"auth_type_required": "jwt"},
        rate_limit={"enabled": True, "token_bucket": {"rate_limit": 1, "refill_rate": 0.001}},
        **extra,
    )


async def test_allowed_request_has_server_stage_and_job_spans(
    spans: InMemorySpanExporter, make_client: Any
) -> None:
    config = full_config()
    client = make_client(guarded(PATH, config))
    response = await client.post("/jobs/42", headers={"authorization": f"Bearer {token('alice')}"})
    assert response.status_code == 200
    found = by_name(spans)
    assert set(found) == {
        "POST /jobs/{resource_id}",
        "asgi_guard.security",
        "asgi_guard.rate_limit",
        "run_job",
    }
    server = found["POST /jobs/{resource_id}"]
    assert server.kind == SpanKind.SERVER
    assert server.parent is None
    assert server.attributes["http.route"] == PATH
    assert server.attributes["asgi_guard.request_id"] == response.headers["x-request-id"]
    assert server.attributes["enduser.id"] == "alice"
    assert "asgi_guard.rejected_by" not in server.attributes
    sid = server.context.span_id
    for name in ("asgi_guard.security", "asgi_guard.rate_limit", "run_job"):
        assert parent_of(found[name]) == sid, name
        assert found[name].context.trace_id == server.context.trace_id
    security = found["asgi_guard.security"].attributes
    assert security["asgi_guard.outcome"] == "passed"
    assert security["asgi_guard.security.authenticated"] is True
    limit = found["asgi_guard.rate_limit"].attributes
    assert limit["asgi_guard.outcome"] == "passed"
    assert limit["asgi_guard.rate_limit.allowed"] is True
    assert limit["asgi_guard.rate_limit.remaining"] == 0
    job = found["run_job"]
    assert job.kind == SpanKind.INTERNAL
    assert job.attributes["asgi_guard.route"] == config.endpoint_name
    assert job.attributes["asgi_guard.trace_label"] == "io"
    assert job.attributes["asgi_guard.resource_id"] == "42"
    assert job.attributes["http.response.status_code"] == 200
    assert job.status.status_code == StatusCode.UNSET
    # Stage spans cover the stage's own work: each ends before the job starts.
    assert found["asgi_guard.rate_limit"].end_time <= job.start_time


async def test_401_span_says_security_rejected(spans: InMemorySpanExporter, make_client: Any) -> None:
    client = make_client(guarded(PATH, full_config()))
    response = await client.post("/jobs/42")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    found = by_name(spans)
    assert set(found) == {"POST /jobs/{resource_id}", "asgi_guard.security"}
    server = found["POST /jobs/{resource_id}"]
    assert server.attributes["asgi_guard.rejected_by"] == "security"
    assert server.attributes["http.response.status_code"] == 401
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is the client's problem, not an error
    assert not server.events
    security = found["asgi_guard.security"]
    assert parent_of(security) == server.context.span_id
    assert security.attributes["asgi_guard.outcome"] == "rejected"
    assert security.attributes["http.response.status_code"] == 401
    assert security.attributes["asgi_guard.reason"] == response.json()["type"].rsplit(":", 1)[-1]


async def test_429_span_says_rate_limit_rejected(spans: InMemorySpanExporter, make_client: Any) -> None:
    client = make_client(guarded(PATH, full_config()))
    auth = {"authorization": f"Bearer {token('bob')}"}
    assert (await client.post("/jobs/7", headers=auth)).status_code == 200
    spans.clear()
    response = await client.post("/jobs/7", headers=auth)
    assert response.status_code == 429
    found = by_name(spans)
    assert set(found) == {"POST /jobs/{resource_id}", "asgi_guard.security", "asgi_guard.rate_limit"}
    server = found["POST /jobs/{resource_id}"]
    assert server.attributes["asgi_guard.rejected_by"] == "rate_limit"
    assert server.attributes["http.response.status_code"] == 429
    limit = found["asgi_guard.rate_limit"]
    assert parent_of(limit) == server.context.span_id
    assert limit.attributes["asgi_guard.outcome"] == "rejected"
    assert limit.attributes["asgi_guard.rate_limit.allowed"] is False
    assert limit.attributes["asgi_guard.rate_limit.retry_after"] == int(response.headers["retry-after"])
    assert found["asgi_guard.security"].attributes["asgi_guard.outcome"] == "passed"


async def test_cache_hit_answers_without_job_span(spans: InMemorySpanExporter, make_client: Any) -> None:
    config = JobConfig(
        endpoint_name=unique("cached_"),
        tracing={"function_name": "read_item", "stage_spans": True},
        cache={"enabled": True, "shared": True},
    )
    client = make_client(guarded("/items/{resource_id}", config, methods=["GET"]))
    first = await client.get("/items/1")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert "read_item" in by_name(spans)
    spans.clear()
    second = await client.get("/items/1")
    assert second.status_code == 200 and second.headers["x-cache"] == "HIT"
    found = by_name(spans)
    assert set(found) == {"GET /items/{resource_id}", "asgi_guard.cache"}  # no job: the handler never ran
    cache = found["asgi_guard.cache"]
    assert parent_of(cache) == found["GET /items/{resource_id}"].context.span_id
    assert cache.attributes["asgi_guard.outcome"] == "answered"
    assert cache.attributes["asgi_guard.cache.hit"] is True
    assert cache.attributes["http.response.status_code"] == 200


async def test_handler_exception_is_recorded(spans: InMemorySpanExporter) -> None:
    app = guarded(PATH, JobConfig(endpoint_name=unique("boom_"), tracing={"function_name": "run_job"}))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/jobs/9?boom=1")
    assert response.status_code == 500
    found = by_name(spans)
    assert set(found) == {"POST /jobs/{resource_id}", "run_job"}
    server, job = found["POST /jobs/{resource_id}"], found["run_job"]
    assert parent_of(job) == server.context.span_id
    for span in (job, server):
        assert span.status.status_code == StatusCode.ERROR
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes["exception.type"] == "RuntimeError"
        assert event.attributes["exception.message"] == "the job blew up"
    assert server.attributes["http.response.status_code"] == 500


async def test_message_spans_only_when_the_route_asks(spans: InMemorySpanExporter, make_client: Any) -> None:
    quiet = JobConfig(endpoint_name=unique("quiet_"))
    chatty = JobConfig(endpoint_name=unique("chatty_"), tracing={"message_spans": True})
    client = make_client(
        guarded("/quiet/{resource_id}", quiet, extra_routes=[("/chatty/{resource_id}", chatty)])
    )
    assert (await client.get("/quiet/1")).status_code == 200
    assert [s.name for s in spans.get_finished_spans()] == ["GET /quiet/{resource_id}"]
    spans.clear()
    assert (await client.get("/chatty/1")).status_code == 200
    names = {s.name for s in spans.get_finished_spans()}
    assert "GET /chatty/{resource_id} http send" in names
    assert "GET /chatty/{resource_id}" in names


class _Refuser(Stage):
    """A test-only stage standing in for any guard stage: decides, then rejects with 402."""

    name = "credits"

    @classmethod
    def enabled_for(cls, config: JobConfig) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        ctx = scope["asgi_guard"]
        ctx.decide(self.name, "rejected", "insufficient_credits", balance=0, required=3)
        raise Problem(402, "insufficient-credits", "Payment Required", "not enough credits")


async def test_probe_wraps_any_stage_and_carries_its_decisions(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    from asgi_guard.stages.telemetry.stage import TelemetryMiddleware

    monkeypatch.setattr("asgi_guard.stack.STAGES", (TelemetryMiddleware, _Refuser))
    config = JobConfig(endpoint_name=unique("pay_"), tracing={"stage_spans": True})
    client = make_client(guarded("/pay", config))
    response = await client.get("/pay")
    assert response.status_code == 402
    found = by_name(spans)
    assert set(found) == {"GET /pay", "asgi_guard.credits"}
    credits = found["asgi_guard.credits"]
    assert parent_of(credits) == found["GET /pay"].context.span_id
    assert credits.attributes["asgi_guard.credits.balance"] == 0
    assert credits.attributes["asgi_guard.credits.required"] == 3
    assert credits.attributes["asgi_guard.outcome"] == "rejected"
    assert credits.attributes["asgi_guard.reason"] == "insufficient-credits"
    assert found["GET /pay"].attributes["asgi_guard.rejected_by"] == "credits"


async def test_without_a_provider_nothing_is_traced(spans: InMemorySpanExporter, make_client: Any) -> None:
    """An app whose runtime has the API's no-op provider: no probes, no server span, no job span,
    requests still answered, even while another provider is installed globally."""
    from opentelemetry.trace import NoOpTracerProvider
    from starlette.applications import Starlette
    from starlette.routing import Route
    from telemetry_apps import job, settings

    from asgi_guard import GuardRuntime, RouteRegistry, install

    runtime = GuardRuntime(settings(), tracer_provider=NoOpTracerProvider())
    assert runtime.tracing.active() is False
    assert runtime.tracing.stage_probe() is None
    config = JobConfig(
        endpoint_name=unique("plain_"), rate_limit={"enabled": True}, tracing={"function_name": "f"}
    )
    registry = RouteRegistry()
    registry.register(PATH, config, methods=["POST"])
    app = Starlette(routes=[Route(PATH, job, methods=["POST"])])
    install(app, registry, runtime=runtime)
    response = await make_client(app).post("/jobs/1")
    assert response.status_code == 200
    assert spans.get_finished_spans() == ()
    assert inject_trace_context() == {}


async def test_inject_trace_context_carries_the_request_trace(
    spans: InMemorySpanExporter, make_client: Any
) -> None:
    seen: dict[str, str] = {}

    async def handler(request: Request) -> JSONResponse:
        seen.update(inject_trace_context())
        assert get_guard(request) is not None
        return JSONResponse({})

    config = JobConfig(endpoint_name=unique("inject_"), tracing={"function_name": "publish_job"})
    client = make_client(guarded("/publish", config, endpoint=handler))
    assert (await client.post("/publish")).status_code == 200
    job = by_name(spans)["publish_job"]
    version, trace_id, span_id, flags = seen["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == job.context.trace_id
    assert int(span_id, 16) == job.context.span_id  # the event's parent is the job span
    assert inject_trace_context() == {}  # outside a request there is nothing to carry
    carried = trace.get_current_span(extract_trace_context(seen)).get_span_context()
    assert (carried.trace_id, carried.span_id) == (job.context.trace_id, job.context.span_id)


# -- the default: one server span, decisions as its attributes -----------------------------------------
async def test_default_is_one_server_span_with_the_decisions(
    spans: InMemorySpanExporter, make_client: Any
) -> None:
    config = JobConfig(
        endpoint_name=unique("jobs_"),
        tracing={"function_name": "run_job"},
        security={"auth_type_required": "jwt"},
        rate_limit={"enabled": True, "token_bucket": {"rate_limit": 10, "refill_rate": 1}},
        cache={"enabled": True, "shared": True},
    )
    client = make_client(guarded(PATH, config, methods=["GET"]))
    auth = {"authorization": f"Bearer {token('carol')}"}
    assert (await client.get("/jobs/5", headers=auth)).status_code == 200
    assert set(by_name(spans)) == {"GET /jobs/{resource_id}", "run_job"}  # the job span was asked for
    spans.clear()
    hit = await client.get("/jobs/5", headers=auth)
    assert hit.status_code == 200
    (server,) = spans.get_finished_spans()  # a hit: the server span and nothing else
    assert server.name == "GET /jobs/{resource_id}" and server.kind == SpanKind.SERVER
    attributes = server.attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == PATH
    assert attributes["url.path"] == "/jobs/5"
    assert attributes["http.response.status_code"] == 200
    assert attributes["enduser.id"] == "carol"
    assert attributes["asgi_guard.request_id"] == hit.headers["x-request-id"]
    assert attributes["asgi_guard.security.outcome"] == "allowed"
    assert attributes["asgi_guard.security.authenticated"] is True
    assert attributes["asgi_guard.rate_limit.outcome"] == "allowed"
    assert attributes["asgi_guard.cache.outcome"] == "answered"
    assert attributes["asgi_guard.cache.reason"] == "hit"
    assert attributes["asgi_guard.cache.hit"] is True
    assert server.status.status_code == StatusCode.UNSET


async def test_default_rejection_names_stage_and_reason_on_the_server_span(
    spans: InMemorySpanExporter, make_client: Any
) -> None:
    client = make_client(guarded(PATH, full_config(stage_spans=False)))
    auth = {"authorization": f"Bearer {token('dave')}"}
    assert (await client.post("/jobs/8", headers=auth)).status_code == 200
    spans.clear()
    response = await client.post("/jobs/8", headers=auth)
    assert response.status_code == 429
    (server,) = spans.get_finished_spans()
    attributes = server.attributes
    assert attributes["asgi_guard.rejected_by"] == "rate_limit"
    assert attributes["asgi_guard.rate_limit.outcome"] == "rejected"
    assert attributes["asgi_guard.rate_limit.allowed"] is False
    assert attributes["asgi_guard.rate_limit.retry_after"] == int(response.headers["retry-after"])
    assert attributes["http.response.status_code"] == 429
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is the client's problem


async def test_default_continues_the_callers_trace(spans: InMemorySpanExporter, make_client: Any) -> None:
    client = make_client(guarded("/plain", JobConfig(endpoint_name=unique("plain_"))))
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    assert (await client.get("/plain", headers=headers)).status_code == 200
    (server,) = spans.get_finished_spans()
    assert server.context.trace_id == int(trace_id, 16)
    assert server.parent is not None and server.parent.span_id == int(parent_id, 16)
    assert server.parent.is_remote
    spans.clear()
    assert (await client.get("/plain", headers={"traceparent": "garbage"})).status_code == 200
    (fresh,) = spans.get_finished_spans()
    assert fresh.parent is None  # a malformed header starts a new trace, never a 500


async def test_fastapi_own_telemetry_gives_one_server_span(
    spans: InMemorySpanExporter, make_client: Any
) -> None:
    """FastAPI 0.165+ traces by itself once a provider exists: the guard annotates FastAPI's span."""
    from fastapi import FastAPI
    from telemetry_apps import settings

    from asgi_guard import RouteRegistry, install

    app = FastAPI()  # its own tracing on (the default)

    @app.get("/things/{resource_id}")
    async def thing(resource_id: str) -> dict[str, str]:
        return {"id": resource_id}

    registry = RouteRegistry()
    registry.register(
        "/things/{resource_id}",
        JobConfig(endpoint_name=unique("things_"), security={"auth_type_required": "jwt"}),
        methods=["GET"],
    )
    install(app, registry, settings())
    client = make_client(app)
    response = await client.get("/things/3", headers={"authorization": f"Bearer {token('erin')}"})
    assert response.status_code == 200
    server_spans = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(server_spans) == 1
    (server,) = server_spans
    assert server.instrumentation_scope is not None and server.instrumentation_scope.name == "fastapi"
    assert server.attributes["asgi_guard.security.authenticated"] is True
    assert server.attributes["enduser.id"] == "erin"
    assert server.attributes["asgi_guard.request_id"] == response.headers["x-request-id"]
    spans.clear()
    rejected = await client.get("/things/3")
    assert rejected.status_code == 401
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.attributes["asgi_guard.rejected_by"] == "security"


async def test_an_app_with_its_own_provider_keeps_its_span_beside_fastapis(
    spans: InMemorySpanExporter, make_client: Any
) -> None:
    """`GuardRuntime(tracer_provider=...)`: the guard's server span goes to that provider, and
    FastAPI's own span (global provider) is left alone."""
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from telemetry_apps import settings

    from asgi_guard import GuardRuntime, RouteRegistry, install

    own = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(own))
    app = FastAPI()

    @app.get("/own/{resource_id}")
    async def thing(resource_id: str) -> dict[str, str]:
        return {"id": resource_id}

    registry = RouteRegistry()
    registry.register("/own/{resource_id}", JobConfig(endpoint_name=unique("own_")), methods=["GET"])
    install(app, registry, runtime=GuardRuntime(settings(), tracer_provider=provider))
    response = await make_client(app).get("/own/1")
    assert response.status_code == 200
    (guard_span,) = own.get_finished_spans()
    assert guard_span.name == "GET /own/{resource_id}"
    assert guard_span.attributes["asgi_guard.request_id"] == response.headers["x-request-id"]
    (fastapi_span,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert "asgi_guard.request_id" not in fastapi_span.attributes
