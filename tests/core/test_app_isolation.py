"""Two apps in one process share no metrics registry, redaction rules or tracer (issue 10, rule 7)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.metrics import metrics_for
from asgi_guard.core.redaction import REDACTED

APP_LOG = logging.getLogger("asgi_guard.app.isolation")  # exists before the stacks are built
PERSON = {"ssn": "111-22-3333", "iban": "DE00123456789012"}


async def handler(request: Request) -> JSONResponse:
    APP_LOG.warning("person %s", PERSON)
    return JSONResponse({"ok": True})


class App:
    """One guarded app with its own registry, tracer provider and redact field."""

    def __init__(self, redact: str) -> None:
        self.label = f"iso_{uuid.uuid4().hex[:8]}"
        self.registry = CollectorRegistry()
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.runtime = GuardRuntime(
            GuardSettings(_env_file=None),  # type: ignore[call-arg]
            metrics_registry=self.registry,
            tracer_provider=provider,
        )
        routes = RouteRegistry()
        routes.register(
            "/p",
            JobConfig(endpoint_name=self.label, redact_fields=[redact], tracing={"function_name": "work"}),
            methods=["GET"],
        )
        self.app = Starlette(routes=[Route("/p", handler)])
        install(self.app, routes, runtime=self.runtime)

    def requests(self, label: str) -> float | None:
        return self.registry.get_sample_value(
            "asgi_guard_requests_total", {"route": label, "method": "GET", "status": "200"}
        )


async def test_two_apps_share_no_registry_redactor_or_tracer(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_guard.app")
    one, two = App(redact="ssn"), App(redact="iban")
    assert one.runtime.redactor is not two.runtime.redactor
    for app in (one, one, two):
        assert (await make_client(app.app).get("/p")).status_code == 200

    # metrics: each app counts in its own registry only, and nothing lands in the global one
    assert one.requests(one.label) == 2 and one.requests(two.label) is None
    assert two.requests(two.label) == 1 and two.requests(one.label) is None
    assert REGISTRY.get_sample_value("asgi_guard_requests_total", {"route": one.label, "method": "GET", "status": "200"}) is None

    # redaction: each app's records are scrubbed by its own fields only
    lines = [r.getMessage() for r in caplog.records if r.name == APP_LOG.name]
    assert len(lines) == 3
    for line in lines[:2]:  # app one hides the ssn, not the iban (not secret there)
        assert PERSON["ssn"] not in line and REDACTED in line and PERSON["iban"] in line
    assert PERSON["iban"] not in lines[2] and PERSON["ssn"] in lines[2]

    # tracing: each app's spans go to its own provider
    names_one = {s.name for s in one.exporter.get_finished_spans()}
    names_two = {s.name for s in two.exporter.get_finished_spans()}
    assert {"GET /p", "work"} <= names_one and {"GET /p", "work"} <= names_two
    routes_one = {s.attributes.get("asgi_guard.route") for s in one.exporter.get_finished_spans()}
    assert two.label not in routes_one
    assert len([s for s in one.exporter.get_finished_spans() if s.name == "work"]) == 2


def test_apps_on_one_registry_share_collectors_and_never_clash() -> None:
    """The default: every app on prometheus-client's global REGISTRY; building many never fails."""
    runtimes = [GuardRuntime(GuardSettings(_env_file=None)) for _ in range(3)]  # type: ignore[call-arg]
    assert all(r.metrics_registry is REGISTRY for r in runtimes)
    assert runtimes[0].metrics is runtimes[1].metrics is runtimes[2].metrics
    own = CollectorRegistry()
    assert metrics_for(own) is metrics_for(own) and metrics_for(own) is not runtimes[0].metrics


def test_a_foreign_collector_of_our_name_is_a_config_error() -> None:
    registry = CollectorRegistry()
    Counter("asgi_guard_requests", "someone else's", registry=registry)
    with pytest.raises(ConfigError, match="asgi_guard_requests"):
        GuardRuntime(GuardSettings(_env_file=None), metrics_registry=registry)  # type: ignore[call-arg]
