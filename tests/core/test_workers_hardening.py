"""Hardening (issue 13, case 9): the embedded backend under a server with several worker processes
(each would keep its own limits, credits and idempotency records) is reported at start-up, as a
warning or, with GuardSettings.multi_worker_embedded = "error", as a refusal to start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgi_guard.state.workers import server_worker_count
from asgi_guard_dev.local import free_port

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    ("argv", "env", "count"),
    [
        (["uvicorn", "app:app", "--workers", "4"], {}, 4),
        (["uvicorn", "app:app", "--workers=2"], {}, 2),
        (["/venv/bin/uvicorn", "app:app"], {"WEB_CONCURRENCY": "3"}, 3),
        (["python", "-m", "uvicorn", "app:app"], {}, None),
        (["gunicorn", "-w", "4", "-k", "uvicorn.workers.UvicornWorker", "app:app"], {}, 4),
        (["gunicorn", "-w2", "app:app"], {}, 2),
        (["gunicorn", "app:app"], {"GUNICORN_CMD_ARGS": "--workers=5 --bind :80"}, 5),
        (["gunicorn", "app:app"], {"WEB_CONCURRENCY": "2"}, 2),
        (["hypercorn", "app:app", "--workers", "2"], {}, 2),
        (["python", "serve.py", "--workers", "3"], {}, None),  # not a server we know: the lock file decides
    ],
)
def test_worker_count_from_the_server(argv: list[str], env: dict[str, str], count: int | None) -> None:
    assert server_worker_count(argv, env) == count


def _serve(extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}", **extra_env}
    env.pop("WEB_CONCURRENCY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_workers_app:app",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
        stderr=subprocess.PIPE,
    )
    return proc, str(port)


def _stderr_until(proc: subprocess.Popen[bytes], needle: str, timeout: float = 20.0) -> str:
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and needle.encode() not in seen:
        try:
            seen += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.1)
    return seen.decode(errors="replace")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_two_uvicorn_workers_on_the_embedded_backend_warn_at_start_up() -> None:
    proc, _ = _serve({})
    try:
        seen = _stderr_until(proc, "per process")
        assert "embedded backend" in seen and "per process" in seen, seen
    finally:
        _stop(proc)


def test_the_warning_can_be_an_error() -> None:
    proc, _ = _serve({"ASGI_GUARD_MULTI_WORKER_EMBEDDED": "error"})
    try:
        seen = _stderr_until(proc, "ConfigError")
        assert "ConfigError" in seen and "worker processes" in seen, seen
    finally:
        _stop(proc)
