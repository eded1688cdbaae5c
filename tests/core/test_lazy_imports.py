"""Lazy imports: `import asgi_guard` and a limit-only app load none of the heavy optional libraries,
and the stage gates that make this possible never skip a stage a route needs."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
HEAVY = ("jwt", "cryptography", "opentelemetry", "pulsar", "_pulsar", "valkey", "libvalkey", "redis",
         "pybreaker", "prometheus_client")

LIMIT_ONLY_APP = """
import asyncio, json, sys
HEAVY = {heavy!r}

def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)

import asgi_guard
after_import = loaded()
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install

async def hello(request):
    return PlainTextResponse("hi")

app = Starlette(routes=[Route("/hello", hello)])
registry = RouteRegistry()
registry.register("/hello", JobConfig(rate_limit={{"enabled": True}}), methods=["GET"])
install(app, registry, {settings})

async def call():
    sent = []
    scope = {{"type": "http", "method": "GET", "path": "/hello", "raw_path": b"/hello", "root_path": "",
             "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "server": ("t", 80),
             "scheme": "http", "http_version": "1.1", "asgi": {{"version": "3.0"}}}}
    async def receive():
        return {{"type": "http.request", "body": b"", "more_body": False}}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])

status, headers = asyncio.run(call())
print(json.dumps({{"after_import": after_import, "after_app": loaded(), "status": status,
                  "ratelimit": headers.get(b"ratelimit", b"").decode()}}))
"""


def run_app(settings: str = "") -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASGI_GUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", LIMIT_ONLY_APP.format(heavy=HEAVY, settings=settings)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_import_and_limit_only_app_load_no_heavy_library() -> None:
    report = run_app()
    assert report["after_import"] == []
    assert report["after_app"] == [], "a rate limit alone must not import these"
    assert report["status"] == 200 and report["ratelimit"].startswith('"token_bucket";r=9')


def test_the_libraries_load_when_a_route_needs_them() -> None:
    """The gates are not just off: metrics on imports prometheus-client (and nothing else)."""
    report = run_app("GuardSettings(metrics_path='/metrics')")
    assert [m for m in report["after_app"] if m.split(".")[0] == "prometheus_client"]
    assert not [m for m in report["after_app"] if m.split(".")[0] in ("jwt", "cryptography", "pulsar")]


def test_public_names_resolve() -> None:
    import asgi_guard

    for name in asgi_guard.__all__:
        assert getattr(asgi_guard, name) is not None, name
    with pytest.raises(AttributeError):
        asgi_guard.not_a_name
    for package in ("circuit_breaker", "credits", "events", "idempotency", "rate_limit", "security"):
        module = importlib.import_module(f"asgi_guard.stages.{package}")
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"


SECTIONS: dict[str, list[dict[str, Any]]] = {
    "security": [{}, {"auth_type_required": "jwt"}, {"ip_whitelist_enabled": True, "ip_allowlist": ["10.0.0.0/8"]}],
    "rate_limit": [{}, {"enabled": True}],
    "idempotency": [{}, {"enabled": True}],
    "cache": [{}, {"enabled": True}],
    "circuit_breaker": [{}, {"enabled": True}],
    "pulsar_labeling": [{}, {"enabled": True}],
    "encryption": [{}, {"enable_decryption": True, "fields": ["x"]}],
    "tracing": [{}, {"trace_label": "t"}],
    "metrics": [{}, {"histogram_name": "h_seconds"}, {"threshold_ms": 5}],
}
LOOSE: dict[str, list[Any]] = {
    "handler_timeout": [None, 2.5],
    "required_credits": [0, 1],
    "credits_price": [None, {"source": "fixed", "value": 3}],
}


@pytest.mark.parametrize("metrics_path", ["", "/metrics"])
def test_gates_admit_every_stage_a_route_enables(metrics_path: str) -> None:
    """For every mix of sections (one at a time and all at once), a gate that says no belongs to a
    stage whose own enabled_for / enabled_in also says no."""
    from asgi_guard import GuardRuntime, GuardSettings, JobConfig
    from asgi_guard.core.stage import section_of
    from asgi_guard.stages import GATES, ORDER, load_stages

    settings = GuardSettings(
        metrics_path=metrics_path, encryption_keys={"k": "A" * 43}, _env_file=None  # type: ignore[call-arg]
    )
    runtime = GuardRuntime(settings)
    configs = [JobConfig(**{name: value}) for name, values in LOOSE.items() for value in values]
    for name, variants in SECTIONS.items():
        configs += [JobConfig(**{name: variant}) for variant in variants]
    everything = {name: variants[-1] for name, variants in SECTIONS.items()}
    configs.append(JobConfig(required_credits=1, handler_timeout=2.5, **everything))
    assert set(GATES) == {module for module, _ in ORDER}, "every stage has a gate"
    for config, ((module, _), stage) in itertools.product(configs, zip(ORDER, load_stages(), strict=True)):
        if not GATES[module](config, runtime):
            section = section_of(config, stage)
            assert not (stage.enabled_for(section) and stage.enabled_in(section, runtime)), (module, config)
