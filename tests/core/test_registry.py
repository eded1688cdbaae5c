"""RouteRegistry: templates, converters, methods, precedence, scale, TOML inheritance, errors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_guard import ConfigError, JobConfig, RouteRegistry


def test_resolve_returns_config_and_params() -> None:
    registry = RouteRegistry()
    config = JobConfig(endpoint_name="io_job")
    registry.register("/jobs/{resource_id}", config, methods=["POST"])
    assert registry.resolve("POST", "/jobs/42") == (config, {"resource_id": "42"})
    assert registry.resolve("GET", "/jobs/42") is None
    assert registry.resolve("POST", "/jobs") is None
    assert registry.resolve("POST", "/jobs/42/extra") is None


def test_convertors_convert_and_constrain() -> None:
    registry = RouteRegistry()
    registry.register("/items/{item_id:int}", JobConfig(endpoint_name="int"))
    registry.register("/ratio/{value:float}", JobConfig(endpoint_name="float"))
    registry.register("/users/{uid:uuid}", JobConfig(endpoint_name="uuid"))
    registry.register("/files/{rest:path}", JobConfig(endpoint_name="path"))
    assert registry.resolve("GET", "/items/7") == (registry.resolve("GET", "/items/7")[0], {"item_id": 7})  # type: ignore[index]
    assert registry.resolve("GET", "/items/seven") is None
    assert registry.resolve("GET", "/ratio/1.5")[1] == {"value": 1.5}  # type: ignore[index]
    uid = uuid.uuid4()
    assert registry.resolve("GET", f"/users/{uid}")[1] == {"uid": uid}  # type: ignore[index]
    assert registry.resolve("GET", "/users/not-a-uuid") is None
    assert registry.resolve("GET", "/files/a/b/c.txt")[1] == {"rest": "a/b/c.txt"}  # type: ignore[index]


def test_static_segments_win_over_dynamic() -> None:
    registry = RouteRegistry()
    registry.register("/jobs/{resource_id}", JobConfig(endpoint_name="dynamic"))
    registry.register("/jobs/summary", JobConfig(endpoint_name="static"))
    registry.register("/jobs/{resource_id}/log", JobConfig(endpoint_name="log"))
    registry.register("/jobs/summary/{day}", JobConfig(endpoint_name="day"))
    assert registry.resolve("GET", "/jobs/summary")[0].endpoint_name == "static"  # type: ignore[index]
    assert registry.resolve("GET", "/jobs/other")[0].endpoint_name == "dynamic"  # type: ignore[index]
    assert registry.resolve("GET", "/jobs/summary/log")[0].endpoint_name == "day"  # type: ignore[index]
    # backtracking: static branch that dead-ends falls back to the dynamic one
    assert registry.resolve("GET", "/jobs/x/log")[0].endpoint_name == "log"  # type: ignore[index]


def test_methods_split_one_template_and_get_implies_head() -> None:
    registry = RouteRegistry()
    registry.register("/jobs/{id}", JobConfig(endpoint_name="read"), methods=["GET"])
    registry.register("/jobs/{id}", JobConfig(endpoint_name="write"), methods=["post", "PUT"])
    assert registry.resolve("GET", "/jobs/1")[0].endpoint_name == "read"  # type: ignore[index]
    assert registry.resolve("HEAD", "/jobs/1")[0].endpoint_name == "read"  # type: ignore[index]
    assert registry.resolve("PUT", "/jobs/1")[0].endpoint_name == "write"  # type: ignore[index]
    assert registry.resolve("DELETE", "/jobs/1") is None
    with pytest.raises(ConfigError, match="POST is already registered"):
        registry.register("/jobs/{id}", JobConfig(), methods=["POST"])


def test_path_convertor_template_split_by_methods() -> None:
    registry = RouteRegistry()
    registry.register("/files/{rest:path}", JobConfig(endpoint_name="read"), methods=["GET"])
    registry.register("/files/{rest:path}", JobConfig(endpoint_name="write"), methods=["PUT"])
    assert registry.resolve("GET", "/files/a/b")[0].endpoint_name == "read"  # type: ignore[index]
    assert registry.resolve("PUT", "/files/a/b")[0].endpoint_name == "write"  # type: ignore[index]


def test_thousand_routes_resolve_exactly() -> None:
    registry = RouteRegistry()
    for i in range(1000):
        registry.register(f"/svc{i}/items/{{item_id:int}}", JobConfig(endpoint_name=f"r{i}"))
        registry.register(f"/static/{i}", JobConfig(endpoint_name=f"s{i}"))
    assert len(registry) == 2000
    for i in (0, 499, 999):
        assert registry.resolve("GET", f"/svc{i}/items/5") == (
            registry.resolve("GET", f"/svc{i}/items/5")[0],  # type: ignore[index]
            {"item_id": 5},
        )
        assert registry.resolve("GET", f"/svc{i}/items/5")[0].endpoint_name == f"r{i}"  # type: ignore[index]
        assert registry.resolve("GET", f"/static/{i}")[0].endpoint_name == f"s{i}"  # type: ignore[index]
    assert registry.resolve("GET", "/svc1000/items/5") is None


def test_bad_config_names_route_and_field() -> None:
    registry = RouteRegistry()
    with pytest.raises(ConfigError) as info:
        registry.register("/jobs/{id}", {"rate_limit": {"token_bucket": {"refill_rate": -1}}}, name="io_job")
    message = str(info.value)
    assert "io_job" in message and "rate_limit.token_bucket.refill_rate" in message
    with pytest.raises(ConfigError, match="cache.capacityy"):
        registry.register("/x", {"cache": {"capacityy": 3}})
    with pytest.raises(ConfigError, match="unknown path convertor"):
        registry.register("/x/{id:nope}", JobConfig())
    with pytest.raises(ConfigError, match="must start with"):
        registry.register("x", JobConfig())


def test_registry_frozen_after_start() -> None:
    registry = RouteRegistry()
    registry.freeze()
    with pytest.raises(ConfigError, match="frozen"):
        registry.register("/late", JobConfig())


def test_job_config_is_frozen_and_defaults_safe() -> None:
    config = JobConfig()
    assert config.security.permission_roles_required == []
    assert config.security.mfa_required is False
    assert not config.rate_limit.enabled and not config.cache.enabled
    assert config.required_credits == 0
    with pytest.raises(Exception):
        config.required_credits = 5  # type: ignore[misc]


TOML = """
[bases.secure]
security.auth_type_required = "jwt"
security.permission_roles_required = ["admin"]
rate_limit = { enabled = true, algo = "fixed_window", fixed_window = { limit = 10, window = 60 } }

[bases.metered]
extends = "secure"
required_credits = 2

[routes.io_job]
path = "/jobs/{resource_id}"
methods = ["POST"]
extends = "metered"
endpoint_name = "io_job"
rate_limit.fixed_window.limit = 5

[routes.io_job_read]
path = "/jobs/{resource_id}"
methods = ["GET"]
extends = "io_job"
required_credits = 0
"""


def test_toml_extends_deep_merges(tmp_path: Path) -> None:
    file = tmp_path / "routes.toml"
    file.write_text(TOML)
    registry = RouteRegistry.from_file(file)
    write, params = registry.resolve("POST", "/jobs/9")  # type: ignore[misc]
    assert params == {"resource_id": "9"}
    assert write.endpoint_name == "io_job"
    assert write.required_credits == 2
    assert write.security.auth_type_required == "jwt"
    assert write.security.permission_roles_required == ["admin"]
    assert write.rate_limit.fixed_window.limit == 5  # overridden
    assert write.rate_limit.fixed_window.window == 60  # inherited
    read, _ = registry.resolve("GET", "/jobs/9")  # type: ignore[misc]
    assert read.required_credits == 0 and read.rate_limit.fixed_window.limit == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[routes.a]\npath = "/a"\nextends = "ghost"\n', "extends unknown base 'ghost'"),
        (
            '[bases.x]\nextends = "y"\n[bases.y]\nextends = "x"\n[routes.a]\npath = "/a"\nextends = "x"\n',
            "cycle",
        ),
        ('[routes.a]\nmethods = ["GET"]\n', "field 'path' is required"),
        ('[routes.a]\npath = "/a"\nrequired_credits = -3\n', "required_credits"),
        ("[routes.a\n", "routes.toml"),
        ("[other]\nx = 1\n", "unknown top-level"),
    ],
)
def test_toml_errors_are_clear(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "routes.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        RouteRegistry.from_file(file)


def test_example_routes_file_is_valid() -> None:
    registry = RouteRegistry.from_file(Path(__file__).parents[2] / "examples" / "routes.toml")
    assert len(registry) >= 2


TEMPLATES = ("/a/{x}", "/a/{y}", "/a/{x:int}", "/b/{x}/c", "/b/{x:path}")
METHOD_SETS = st.one_of(st.none(), st.sets(st.sampled_from(["GET", "POST", "PUT", "HEAD"]), min_size=1))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TEMPLATES), METHOD_SETS), max_size=6))
def test_one_route_per_template_key_is_its_own_table(registrations: list[Any]) -> None:
    """A template key with a single route keeps the route alone: conflicts and method tables are
    those of one table per key (the reference: `_claim`'s rule on a fresh dict per key)."""
    from asgi_guard.registry import ANY, _table, _template_key

    registry = RouteRegistry()
    model: dict[str, dict[str, Any]] = {}  # key -> method -> the route expected to own it
    for template, methods in registrations:
        key = _template_key(template)
        probe = RouteRegistry().register(template, JobConfig(), methods=methods)  # normalised methods
        table = model.get(key, {})
        claims = (ANY,) if probe.any_method else probe.methods
        conflict = any(m in table and not (m == "HEAD" and table[m].methods != probe.methods) for m in claims)
        if conflict:
            with pytest.raises(ConfigError):
                registry.register(template, JobConfig(), methods=methods)
            continue
        route = registry.register(template, JobConfig(), methods=methods)
        model[key] = {**table, **dict.fromkeys(claims, route)}
        found = registry._dynamic[key]
        assert (found if isinstance(found, dict) else _table(found)) == model[key]
    for method in ("GET", "POST", "PUT", "HEAD", "DELETE"):
        for path in ("/a/1", "/a/z", "/b/1/c", "/b/1/d"):
            found_route = registry.match(method, path)
            assert found_route is None or any(found_route[0] is r for r in registry)


@pytest.mark.parametrize(
    "methods", [["GET POST"], ["GET,POST"], [""], ["G\x00T"], ["é"], ["GET", " "], "GET", ["GET\r\n"]]
)
def test_a_method_that_is_not_an_http_token_is_a_config_error(methods: Any) -> None:
    """`methods=["GET POST"]` (or the string "GET") would register a policy no request matches: on
    a bare ASGI app its GETs and POSTs would then pass unguarded. RFC 9110 section 9.1: a method
    is a token."""
    with pytest.raises(ConfigError, match="method"):
        RouteRegistry().register("/x", JobConfig(), methods=methods)


@given(st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1))
def test_every_http_token_is_a_method(method: str) -> None:
    route = RouteRegistry().register("/x", JobConfig(), methods=[method])
    assert method.upper() in route.methods
