"""The console, metrics and health endpoints behind a `root_path` (uvicorn --root-path, a proxy that
strips a prefix): found at their configured paths below the app's root, as the app's routes are."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, install
from asgi_guard_dev.local import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "console-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("home")


def app_with_endpoints() -> Starlette:
    app = Starlette(routes=[Route("/", home)])
    settings = GuardSettings(  # type: ignore[call-arg]
        _env_file=None,
        console_path="/_guard",
        console_token=TOKEN,
        metrics_path="/metrics",
        health_path="/healthz",
    )
    install(app, None, settings)
    return app


async def call(app: Any, path: str, root_path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, root_path=root_path, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get(path, headers=headers)


@pytest.mark.parametrize("root_path", ["", "/api", "/api/v1"])
async def test_endpoints_are_found_below_the_root_path(root_path: str) -> None:
    app = app_with_endpoints()
    # ASGI: `path` is the full path, root_path included (what uvicorn --root-path sends)
    assert (await call(app, root_path + "/", root_path)).text == "home"
    metrics = await call(app, root_path + "/metrics", root_path)
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
    assert (await call(app, root_path + "/healthz", root_path)).status_code == 200
    summary = await call(app, root_path + "/_guard/api/summary", root_path, BEARER)
    assert summary.status_code == 200 and "counts" in summary.json()
    page = await call(app, root_path + "/_guard", root_path, BEARER)
    assert page.status_code == 308 and page.headers["location"] == root_path + "/_guard/"


async def test_the_login_cookie_is_scoped_to_the_console_below_the_root_path() -> None:
    app = app_with_endpoints()
    transport = httpx.ASGITransport(app=app, root_path="/api", client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.post(
            "/api/_guard/login",
            content=f"token={TOKEN}".encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 303
    assert "Path=/api/_guard;" in response.headers["set-cookie"]


async def test_a_path_outside_the_root_path_is_not_the_console() -> None:
    """A server that leaves `path` without the root_path prefix (older ASGI servers) still routes
    `/metrics` to the endpoint; `/api/metrics` with root_path `/v2` is an app path, not metrics."""
    app = app_with_endpoints()
    assert (await call(app, "/metrics", "/api")).status_code == 200
    assert (await call(app, "/api/metrics", "/v2")).status_code == 404


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """tests/console/console_served.py under uvicorn --root-path /api on a loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ASGI_GUARD_CONSOLE_PATH": "/_guard",
        "ASGI_GUARD_CONSOLE_TOKEN": TOKEN,
        "ASGI_GUARD_METRICS_PATH": "/metrics",
        "ASGI_GUARD_HEALTH_PATH": "/healthz",
        "ASGI_GUARD_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
    }
    command = [sys.executable, "-m", "uvicorn", "tests.console.console_served:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--root-path", "/api", "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/catalog", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"uvicorn did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_under_uvicorn_root_path(served: str) -> None:
    """A proxy strips `/api` and forwards `/metrics`; uvicorn --root-path /api hands the app
    path `/api/metrics`, root_path `/api`."""
    metrics = httpx.get(f"{served}/metrics", timeout=5)
    assert metrics.status_code == 200 and "asgi_guard" in metrics.text
    assert httpx.get(f"{served}/healthz", timeout=5).status_code == 200
    summary = httpx.get(f"{served}/_guard/api/summary", headers=BEARER, timeout=5)
    assert summary.status_code == 200 and "counts" in summary.json()
    login = httpx.post(
        f"{served}/_guard/login",
        content=f"token={TOKEN}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert login.status_code == 303 and "Path=/api/_guard;" in login.headers["set-cookie"]
