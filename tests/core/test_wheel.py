"""`asgi-guard demo` from the built wheel, installed into a fresh venv (no checkout on the path).

Slow (builds the wheel, pip-installs it with the `demo` extra: about 50 s with a warm pip cache), so
it carries the `wheel` marker: deselect locally with `-m "not wheel"`; CI runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from asgi_guard_dev.local import free_port

ROOT = Path(__file__).parents[2]
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(240)]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASGI_GUARD_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "ASGI_GUARD_CACHE": str(tmp_path / "cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONUNBUFFERED": "1"}


def test_demo_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        check=True, env=env, timeout=120, cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("asgi_guard-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[demo]"],
        check=True, env=env, timeout=180, cwd=tmp_path,
    )
    command = str(venv / "bin" / "asgi-guard")
    version = subprocess.run([command, "--version"], capture_output=True, text=True, env=env, timeout=30,
                             cwd=tmp_path)
    import asgi_guard

    assert version.stdout.strip() == f"asgi-guard {asgi_guard.__version__}", version.stderr
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import asgi_guard; print(asgi_guard.__file__)"],
        capture_output=True, text=True, env=env, timeout=30, cwd=tmp_path,
    )
    assert str(venv) in located.stdout, "the test must exercise the installed wheel, not the checkout"

    port = free_port()
    proc = subprocess.Popen(
        [command, "demo", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "Uvicorn running" in line:
                break
        output = "\n".join(lines)
        assert "Uvicorn running" in output and "Development JWT" in output, output
        token = lines[lines.index(next(x for x in lines if x.startswith("Development JWT"))) + 1].strip()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/42", timeout=10)
            raise AssertionError("an anonymous request must be rejected")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401 and exc.headers["content-type"] == "application/problem+json"
            assert json.loads(exc.read())["status"] == 401
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/jobs/42", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and response.headers["x-cache"] == "MISS"
            assert json.loads(response.read())["known"] is False
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    print(f"wheel build + install + demo: {time.monotonic() - started:.1f}s")
