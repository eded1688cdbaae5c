"""One OS process of the two-tier exactness test: concurrent requests of a free and a pro principal.

Usage: python _tier_worker.py URL KEY_PREFIX REQUESTS BARRIER_DIR WORKER_ID
Both workers meet at a file barrier, then each fires REQUESTS as alice (free) and REQUESTS as bob
(pro) at once through the full stack. Prints one JSON line: {"free": allowed, "pro": allowed,
"other": count of statuses that are neither 200 nor 429, "policies": [the policy names seen]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _policy_apps import TIERS, bearer, policy_app

from asgi_guard import GuardSettings

RATE_LIMIT = {
    "enabled": True,
    "algo": "fixed_window",
    "fixed_window": {"limit": 1, "window": 1_000_000_000},
    # full forms, not "7/day": a day window ends at midnight UTC, and a run across it would count twice
    "tiers": {
        "free": {"algo": "fixed_window", "fixed_window": {"limit": 7, "window": 1_000_000_000}},
        "pro": {"algo": "fixed_window", "fixed_window": {"limit": 23, "window": 1_000_000_000}},
    },
}


async def meet(barrier: Path, worker: str, parties: int = 2, timeout: float = 30.0) -> None:
    (barrier / f"go.{worker}").touch()
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("go.*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("the other worker never came")
        await asyncio.sleep(0.002)


async def main() -> None:
    url, prefix, requests, barrier_dir, worker = sys.argv[1:6]
    pooling = {"socket_timeout": 5.0, "connect_timeout": 5.0, "max_connections": 64}
    settings = GuardSettings(valkey_url=url, key_prefix=prefix, pooling=pooling, metrics_collect=True)  # type: ignore[arg-type]
    app = policy_app(settings, tier=TIERS, rate_limit=RATE_LIMIT)
    headers = {"free": bearer("alice", tier="free"), "pro": bearer("bob", tier="pro")}
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.get("/items", headers=bearer("warm-up", tier="free"))

        async def one(tier: str) -> tuple[str, int, str]:
            async with gate:
                response = await client.get("/items", headers=headers[tier])
                return tier, response.status_code, response.headers.get("ratelimit-policy", "")

        await meet(Path(barrier_dir), worker)
        results = await asyncio.gather(*(one(t) for _ in range(int(requests)) for t in ("free", "pro")))
    print(
        json.dumps(
            {
                "free": sum(1 for t, s, _ in results if t == "free" and s == 200),
                "pro": sum(1 for t, s, _ in results if t == "pro" and s == 200),
                "other": sum(1 for _, s, _ in results if s not in (200, 429)),
                "policies": sorted({p for _, _, p in results}),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
