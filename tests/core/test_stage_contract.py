"""The stage contract (issue 10, rules 1, 5, 8): a stage gets its own section and a small RouteInfo;
decisions are typed and frozen; one place answers a Problem and records who rejected; a route's
`pooling` bounds every store call of that route."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import CreditsConfig, RateLimitConfig, TelemetryConfig
from asgi_guard.core.context import Decision, GuardContext
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.core.stage import RouteInfo, Stage, build_chain, section_of
from asgi_guard.stages import load_stages
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import MemoryBackend, ValkeyBackend

SETTINGS = GuardSettings(_env_file=None)  # type: ignore[call-arg]


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


class Recorder(Stage[Any]):
    """Notes what it was given."""

    name = "recorder"
    section: ClassVar[str | None] = "rate_limit"
    seen: ClassVar[list[tuple[Any, RouteInfo[Any]]]] = []

    def __init__(self, app: Any, route: RouteInfo[Any], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        type(self).seen.append((self.config, route))

    @classmethod
    def enabled_for(cls, config: Any) -> bool:
        return True


def _route(config: JobConfig, path: str = "/jobs/{resource_id}") -> Any:
    registry = RouteRegistry()
    return registry.register(path, config, methods=["POST"])


def _models(value: Any) -> list[BaseModel]:
    found = []
    for item in dataclasses.fields(value):
        field_value = getattr(value, item.name)
        if isinstance(field_value, BaseModel):
            found.append(field_value)
    return found


def test_a_stage_gets_its_section_and_a_route_info_not_the_job_config() -> None:
    Recorder.seen.clear()
    config = JobConfig(
        endpoint_name="ep", tracing={"trace_label": "tl"}, rate_limit={"enabled": True}, handler_timeout=2.0
    )
    build_chain(ok, _route(config), GuardRuntime(SETTINGS, MemoryBackend()), (Recorder,))
    ((section, info),) = Recorder.seen
    assert isinstance(section, RateLimitConfig) and section is config.rate_limit
    assert (info.template, info.label, info.trace_label) == ("/jobs/{resource_id}", "ep", "tl")
    assert info.path_params == ("resource_id",) and info.handler_timeout == 2.0
    assert info.stages == frozenset({"recorder"})
    assert not any(isinstance(model, JobConfig) for model in _models(info))


def test_composed_sections_keep_the_job_config_field_names() -> None:
    config = JobConfig(required_credits=2, credit_type="gpu", charge_cache_hits=True, redact_fields=["ssn"])
    assert config.credits == CreditsConfig(required_credits=2, credit_type="gpu", charge_cache_hits=True)
    assert isinstance(config.telemetry, TelemetryConfig) and config.telemetry.redact_fields == ("ssn",)
    assert "credits" not in config.model_dump() and "telemetry" not in config.model_dump()


def test_every_stage_names_a_section_of_job_config() -> None:
    config = JobConfig()
    for stage in load_stages():
        assert stage.section is not None, stage.name
        getattr(config, stage.section)


def test_charging_hits_moves_credits_before_the_cache() -> None:
    runtime = GuardRuntime(SETTINGS, MemoryBackend())
    order: list[str] = []

    def factory(stage: Any, app: Any, info: RouteInfo[Any], rt: GuardRuntime) -> Any:
        order.append(stage.name)
        return stage(app, info, rt)

    for charge, expected in ((False, ["credits", "cache"]), (True, ["cache", "credits"])):
        order.clear()
        config = JobConfig(required_credits=1, charge_cache_hits=charge, cache={"enabled": True})
        build_chain(ok, _route(config, "/p"), runtime, load_stages(), factory)
        built = [name for name in order if name in ("cache", "credits")]  # built innermost first
        assert built == expected


def test_decisions_are_typed_and_immutable() -> None:
    ctx = GuardContext("r1", _route(JobConfig()), {}, "GET", "/", "127.0.0.1", None, None, 1024)  # type: ignore[arg-type]
    decision = ctx.decide("credits", "allowed", "reserved", balance=7)
    assert isinstance(decision, Decision) and ctx.decisions["credits"] is decision
    assert decision.fields() == {"outcome": "allowed", "reason": "reserved", "balance": 7}
    assert ctx.rejected_by is None
    with pytest.raises(AttributeError):
        decision.outcome = "rejected"  # type: ignore[misc]
    ctx.decide("credits", "rejected", "insufficient_credits")
    assert ctx.rejected_by == "credits" and ctx.decisions["credits"].reason == "insufficient_credits"


def _app(config: JobConfig, seen: list[GuardContext], **settings: Any) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"ok": True})

    registry = RouteRegistry()
    registry.register("/p", config, methods=["POST"])
    inner = Starlette(routes=[Route("/p", endpoint, methods=["POST"])])
    install(inner, registry, GuardSettings(_env_file=None, **settings))  # type: ignore[call-arg]

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)
        if "asgi_guard" in scope:
            seen.append(scope["asgi_guard"])

    return outer  # type: ignore[return-value]


async def test_rejected_by_always_names_a_stage(make_client: Any) -> None:
    seen: list[GuardContext] = []
    secured = JobConfig(endpoint_name="sec", security={"auth_type_required": "jwt"}, max_body_size=4)
    client = make_client(_app(secured, seen, jwt_secret="s" * 32, jwt_algorithms=["HS256"]))
    assert (await client.post("/p")).status_code == 401
    assert seen[-1].rejected_by == "security" and seen[-1].decisions["security"].outcome == "rejected"

    body = JobConfig(endpoint_name="big", resource_id_from_body=True, max_body_size=4)
    client = make_client(_app(body, seen))
    assert (await client.post("/p", content=b'{"resource_id": 1}')).status_code == 413
    assert seen[-1].rejected_by == "stack"  # no stage decided: stage 0 read the body


def test_route_pooling_sets_only_the_route_bound() -> None:
    assert JobConfig(pooling={"socket_timeout": 0.1}).pooling is not None
    for field, value in (
        ("max_connections", 5),
        ("connect_timeout", 1.0),
        ("pool_timeout", 1.0),  # these were accepted and silently ignored (found by a newcomer)
        ("health_check_interval", 1.0),
        ("retry_backoff", 0.1),
        ("auto_pipeline", False),
    ):
        with pytest.raises(ValidationError, match=f"pooling.{field} is app-wide"):
            JobConfig(pooling={field: value})
    memory = MemoryBackend()
    assert memory.bounded(0.1) is memory
    valkey = ValkeyBackend("valkey://127.0.0.1:1", key_prefix="x")
    view = valkey.bounded(0.1)
    assert view.timeout == 0.1 and valkey.timeout == 1.0 and view.client is valkey.client  # the default
    assert valkey.bounded(0.1) is view and valkey.bounded(1.0) is valkey


async def test_route_pooling_bounds_every_store_call(
    own_valkey: Any, key_prefix: str, make_client: Any
) -> None:
    """Credits (not only rate limiting) on a server that stopped answering: the route's 0.2 s
    bound, not the app's 5 s one, decides how soon the 503 comes."""
    settings = GuardSettings(  # type: ignore[call-arg]
        valkey_url=own_valkey.url, key_prefix=key_prefix, pooling={"socket_timeout": 5.0}, _env_file=None
    )
    runtime = GuardRuntime(settings)
    registry = RouteRegistry()
    registry.register("/p", JobConfig(required_credits=1, pooling={"socket_timeout": 0.2}), methods=["POST"])
    app = Starlette(routes=[Route("/p", ok, methods=["POST"])])
    install(app, registry, runtime=runtime)
    client = make_client(app)
    await credit_store(runtime.backend).set(Anonymous("127.0.0.1"), 5)
    assert (await client.post("/p")).status_code == 200
    pid = own_valkey.nodes[0].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = await asyncio.wait_for(client.post("/p"), timeout=4)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
        await runtime.shutdown()
    assert response.status_code == 503 and elapsed < 2.0


def test_no_stage_module_reaches_the_job_config_or_the_chain() -> None:
    """Rule 1 and the events stage's old sideways reach: under asgi_guard/stages/ nothing imports
    the JobConfig (asgi_guard.config), the registry, the stack, or the stage list itself."""
    import ast
    from pathlib import Path

    import asgi_guard.stages as stages_package

    root = Path(stages_package.__file__).parent
    forbidden = {"asgi_guard.config", "asgi_guard.config.job", "asgi_guard.registry", "asgi_guard.stack"}
    offenders = []
    for path in root.rglob("*.py"):
        if path == root / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | (
                    {f"{node.module}.{a.name}" for a in node.names} if node.module == "asgi_guard" else set()
                )
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            for name in names:
                if name in forbidden or name == "asgi_guard.stages":
                    offenders.append(f"{path.relative_to(root)}: {name}")
    assert offenders == []


@settings(max_examples=60, deadline=None)
@given(
    limit=st.booleans(),
    cache=st.booleans(),
    price=st.integers(0, 2),
    charge=st.booleans(),
    breaker=st.booleans(),
    idempotent=st.booleans(),
)
def test_chain_order_and_sections(
    limit: bool, cache: bool, price: int, charge: bool, breaker: bool, idempotent: bool
) -> None:
    """Any mix of stages: the stack's order (credits just outside the cache iff hits are charged),
    each stage handed its own section, every RouteInfo naming the same set of stages."""
    config = JobConfig(
        rate_limit={"enabled": limit},
        cache={"enabled": cache},
        required_credits=price,
        charge_cache_hits=charge,
        circuit_breaker={"enabled": breaker},
        idempotency={"enabled": idempotent},
    )
    built: list[tuple[str, RouteInfo[Any]]] = []

    def factory(stage: Any, app: Any, info: RouteInfo[Any], rt: GuardRuntime) -> Any:
        built.append((stage.name, info))
        return app

    runtime = GuardRuntime(SETTINGS, MemoryBackend())
    build_chain(ok, _route(config, "/p"), runtime, load_stages(), factory)
    names = [name for name, _ in reversed(built)]  # built innermost first
    expected = [  # enabled_in too: with metrics opt-in (off) telemetry has nowhere to report
        s.name
        for s in load_stages()
        if s.enabled_for(section_of(config, s)) and s.enabled_in(section_of(config, s), runtime)
    ]
    if charge and "credits" in expected and "cache" in expected:
        expected.remove("credits")
        expected.insert(expected.index("cache"), "credits")
    assert names == expected
    for name, info in built:
        stage = next(s for s in load_stages() if s.name == name)
        assert info.config == section_of(config, stage) and info.stages == frozenset(names)


def test_each_stage_route_info_copies_every_field_of_the_route() -> None:
    """The chain builder's fast copy (one RouteInfo per stage and route) equals dataclasses.replace,
    for every field RouteInfo has, now or later."""
    import dataclasses

    from asgi_guard.core.pooling import PoolingConfig
    from asgi_guard.core.stage import RouteInfo, _with_section

    def inner(app: object) -> object:
        return app

    base: RouteInfo[object] = RouteInfo(
        template="/a/{x}",
        methods=frozenset({"GET"}),
        label="a",
        trace_label="t",
        path_params=("x",),
        resource_id_field="x",
        resource_id_from_body=True,
        handler_timeout=1.5,
        pooling=PoolingConfig(),
        stages=frozenset({"rate_limit"}),
        exempt=frozenset({"credits"}),
    )
    section = object()
    copied = _with_section(base, section, inner)  # type: ignore[arg-type]
    expected = dataclasses.replace(base, config=section, build_inner=inner)
    for field in dataclasses.fields(RouteInfo):
        assert getattr(copied, field.name) == getattr(expected, field.name), field.name
