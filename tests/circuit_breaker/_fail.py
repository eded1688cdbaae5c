"""Worker process: send N requests to a failing route whose breaker state lives in Valkey.

Usage: python _fail.py VALKEY_URL KEY_PREFIX LABEL N TIMEOUT  -> prints the statuses as a JSON list
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: guardkit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import CircuitBreakerConfig, PoolingConfig
from tests.circuit_breaker._helpers import client, guarded_app


async def failing(request: Request) -> Response:
    return PlainTextResponse("dependency down", status_code=500)


async def main(url: str, prefix: str, label: str, count: int, timeout: float) -> None:
    settings = GuardSettings(
        _env_file=None,  # type: ignore[call-arg]
        valkey_url=url,
        key_prefix=prefix,
        pooling=PoolingConfig(socket_timeout=3.0),
    )
    config = JobConfig(
        endpoint_name=label,
        circuit_breaker=CircuitBreakerConfig(
            enabled=True, circuit_breaker_threshold=3, circuit_breaker_timeout=1
        ),
    )
    async with client(guarded_app(failing, config, settings=settings)) as http:
        statuses = [(await http.get("/job")).status_code for _ in range(count)]
    print(json.dumps(statuses))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
