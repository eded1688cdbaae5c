"""One OS process of the exactness test: fires concurrent requests through the full stack.

Usage: python _rl_exact_worker.py URL KEY_PREFIX LIMIT REQUESTS ROUNDS BARRIER_DIR WORKER_ID
Before each round the two workers meet at a file barrier, so their bursts really overlap.
Prints one JSON line: {"token_bucket": [allowed per round], "fixed_window": [...], "other": [...]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _rl_apps import limited_app

from asgi_guard import GuardSettings


async def meet(barrier: Path, step: str, worker: str, parties: int = 2, timeout: float = 30.0) -> None:
    """Wait (bounded) until every worker has reached `step`."""
    (barrier / f"{step}.{worker}").touch()
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob(f"{step}.*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {step}: the other worker never came")
        await asyncio.sleep(0.002)


async def main() -> None:
    url, prefix, limit, requests, rounds, barrier_dir, worker = sys.argv[1:8]
    n, per_round, barrier = int(limit), int(requests), Path(barrier_dir)
    # generous bounds: this test is about exactness, and the machine may be busy
    pooling = {"socket_timeout": 5.0, "connect_timeout": 5.0, "max_connections": 64}
    settings = GuardSettings(valkey_url=url, key_prefix=prefix, pooling=pooling)
    apps = {
        "token_bucket": limited_app(
            {"algo": "token_bucket", "token_bucket": {"rate_limit": n, "refill_rate": 1e-6}}, settings
        ),
        "fixed_window": limited_app(
            {"algo": "fixed_window", "fixed_window": {"limit": n, "window": 1_000_000_000}}, settings
        ),
    }
    result: dict[str, list[int]] = {"token_bucket": [], "fixed_window": [], "other": []}
    gate = asyncio.Semaphore(32)  # stay within the pool's max_connections
    for name, app in apps.items():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            await client.get("/items/warm-up")  # connect and load the script before the start line

            async def one(path: str) -> int:
                async with gate:
                    return (await client.get(path)).status_code

            for r in range(int(rounds)):
                statuses: list[int] = []
                # two halves, each started together by a barrier: a half is smaller than the limit,
                # so neither process can take the whole quota alone, whatever the scheduling
                for half in ("a", "b"):
                    await meet(barrier, f"{name}-{r}-{half}", worker)
                    statuses += await asyncio.gather(
                        *(one(f"/items/round-{r}") for _ in range(per_round // 2))
                    )
                result[name].append(statuses.count(200))
                result["other"].append(sum(1 for s in statuses if s not in (200, 429)))
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
