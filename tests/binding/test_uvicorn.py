"""Under a real uvicorn: `--root-path` cannot bypass the guard; a ConfigError stops the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from asgi_guard_dev.local import free_port

HERE = Path(__file__).parent


def _start(*args: str, app: str = "") -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {
        **os.environ,
        "BIND_APP": app,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "uvicorn_apps:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port


def _wait(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("uvicorn did not start")


def test_root_path_flag_cannot_bypass_the_guard() -> None:
    proc, port = _start("--root-path", "/api")
    try:
        _wait(port, proc)
        base = f"http://127.0.0.1:{port}"
        for path in ("/jobs/1", "/api/jobs/1", "/jobs/1%0A"):
            response = httpx.get(base + path, timeout=5)
            assert response.status_code in (401, 404), (path, response.status_code, response.text)
            assert "private" not in response.text
        # uvicorn serves /jobs/1 as path /api/jobs/1 with root_path /api: Starlette routes it to /jobs/{rid}
        assert httpx.get(base + "/jobs/1", timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("app", ["typo", "middleware"])
def test_config_error_stops_uvicorn_with_the_routes_name(app: str) -> None:
    proc, _ = _start(app=app)
    try:
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    assert code != 0, output
    assert ("job_status" if app == "typo" else "job_post") in output
    assert "Application startup failed" in output or "Error loading" in output or "ConfigError" in output


def test_websocket_refused_then_accepted_under_uvicorn() -> None:
    import asyncio

    import jwt
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    proc, port = _start()
    secret = "uvicorn-tests-secret-uvicorn-tests-secret"
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, secret, algorithm="HS256")

    async def run() -> None:
        url = f"ws://127.0.0.1:{port}/feed"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, open_timeout=5):
                pass
        assert refused.value.response.status_code == 401
        assert b"missing-token" in refused.value.response.body
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5
        ) as ws:
            assert await ws.recv() == "private feed"

    try:
        _wait(port, proc)
        asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(10)
