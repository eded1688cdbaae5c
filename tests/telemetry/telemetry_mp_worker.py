"""A worker process for the multiprocess-metrics test: serves N requests in-process, then exits.

Run with PROMETHEUS_MULTIPROC_DIR set (before prometheus-client is imported, as a real server's
workers would be). Usage: python telemetry_mp_worker.py ROUTE_LABEL HISTOGRAM_NAME COUNT
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def main(label: str, histogram: str, count: int) -> None:
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "run me in multiprocess mode"
    registry = RouteRegistry()
    registry.register(
        "/work/{resource_id}", JobConfig(endpoint_name=label, metrics={"histogram_name": histogram}), ["POST"]
    )
    app = Starlette(routes=[Route("/work/{resource_id}", ok, methods=["POST"])])
    install(app, registry, GuardSettings(metrics_collect=True))  # counted, served by the scraper
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as client:
        for i in range(count):
            response = await client.post(f"/work/{i}")
            assert response.status_code == 200, response.text


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
