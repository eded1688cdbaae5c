"""prometheus-client multiprocess mode: two worker processes, one aggregated exposition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from telemetry_apps import guarded, parse, sample, unique

from asgi_guard import JobConfig

WORKER = Path(__file__).with_name("telemetry_mp_worker.py")


async def test_two_workers_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    label, histogram = unique("mp_"), unique("mp_job_seconds_")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), label, histogram, str(n)], env=env, cwd=root)
        for n in (3, 5)
    ]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    assert list(tmp_path.glob("*.db")), "the workers wrote no multiprocess files"

    # Any process serving /metrics with the same directory reports the sum over the workers.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    client = make_client(guarded("/other", JobConfig(endpoint_name=unique("scraper_"))))
    response = await client.get("/metrics")
    assert response.status_code == 200
    families = parse(response.text)
    assert sample(families, "asgi_guard_requests_total", route=label, method="POST", status="200") == 8
    assert sample(families, "asgi_guard_request_duration_seconds_count", route=label) == 8
    assert sample(families, f"{histogram}_count", route=label) == 8
    assert sample(families, f"{histogram}_bucket", route=label, le="+Inf") == 8
