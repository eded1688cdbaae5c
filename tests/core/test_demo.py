"""`asgi-guard demo` serves the FastAPI example and its printed curl lines answer as promised."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgi_guard_dev.valkey import free_port

ROOT = Path(__file__).parents[2]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_prints_token_and_curl_lines_that_work(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "ASGI_GUARD_CACHE": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("ASGI_GUARD_VALKEY_URL", None)
    env.pop("ASGI_GUARD_PULSAR_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgi_guard.cli", "demo", "--port", str(port)],
        cwd=tmp_path,  # the demo must not depend on the working directory
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
        output = "\n".join(lines)
        assert "Development JWT" in output, output
        curls = [line.strip() for line in lines if line.strip().startswith("curl ")]
        assert len(curls) == 3, output

        def run(command: str) -> str:
            result = subprocess.run(
                [*shlex.split(command), "-i", "-m", "10"], capture_output=True, text=True, timeout=30
            )
            return result.stdout

        first = run(curls[0])
        assert first.startswith("HTTP/1.1 200"), first
        assert "x-request-id" in first.lower() and "x-credits-remaining" in first.lower()
        assert '"status":"accepted"' in first and "s3cr3t" in first  # decrypted back for the caller
        anonymous = run(curls[1])
        assert anonymous.startswith("HTTP/1.1 401"), anonymous
        assert "application/problem+json" in anonymous and "www-authenticate: bearer" in anonymous.lower()
        status = run(curls[2])
        assert status.startswith("HTTP/1.1 200"), status
        assert '"known":true' in status and "x-cache: miss" in status.lower()
        again = run(curls[2])
        assert "x-cache: hit" in again.lower()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
