"""Worker process: fire N concurrent priced requests at a guarded app sharing one Valkey.

Usage: python _burst.py VALKEY_URL KEY_PREFIX N START_AT  -> prints {"200": a, "402": b, ...}
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: guardkit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import PoolingConfig
from tests.credits._helpers import client, guarded_app


async def handler(request: Request) -> Response:
    await asyncio.sleep(0.01)
    return PlainTextResponse("done")


async def main(url: str, prefix: str, count: int, start_at: float) -> None:
    settings = GuardSettings(
        _env_file=None,  # type: ignore[call-arg]
        valkey_url=url,
        key_prefix=prefix,
        pooling=PoolingConfig(socket_timeout=5.0, max_connections=200),
    )
    app = guarded_app(handler, JobConfig(endpoint_name="burst", required_credits=1), settings=settings)
    async with client(app) as http:
        await http.get("/not-guarded")  # start-up (connect) before the burst
        await asyncio.sleep(max(0.0, start_at - time.time()))
        responses = await asyncio.gather(*(http.get("/job") for _ in range(count)))
    print(json.dumps(collections.Counter(str(r.status_code) for r in responses)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
