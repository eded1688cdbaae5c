"""The `asgi-guard` command: check, routes, services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_routes_prints_effective_policy_table() -> None:
    result = run_cli("routes", "examples/routes.toml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "METHODS", "PATH"]
    io_job = next(line for line in lines if line.startswith("io_job "))
    assert "POST" in io_job and "/jobs/{resource_id}" in io_job
    assert "rate_limit=token_bucket" in io_job and "credits=1 default" in io_job and "auth=jwt" in io_job


@pytest.mark.parametrize("kind", ["valkey", "valkey-cluster"])
def test_services_up_and_down(kind: str, tmp_path: Path) -> None:
    env = {"ASGI_GUARD_CACHE": str(tmp_path)}
    up = run_cli("services", "up", kind, env=env)
    try:
        assert up.returncode == 0, up.stderr
        url = up.stdout.strip().split("ASGI_GUARD_VALKEY_URL=")[1]
        import valkey

        if kind == "valkey":
            client = valkey.Valkey.from_url(url.replace("valkey://", "redis://"))
            assert client.ping()
            client.close()
        else:
            assert url.startswith("valkey+cluster://") and url.count(",") == 2
    finally:
        down = run_cli("services", "down", kind, env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    again = run_cli("services", "down", kind, env=env)
    assert "was not running" in again.stdout
