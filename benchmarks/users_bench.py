"""Per-request cost of the full stack (memory backend, tracing off) with 1,000 against 100,000 distinct
users, each with their own token: the verified-token cache must hold them (issue 16: <= 1.2x).

Two apps (one per user count), warmed so every user has verified once and has a cache entry, then
paired blocks alternating order; ratio = median of per-pair ratios (100,000 / 1,000). The default
pattern is "miss" (a new item per request): "hit" with 100,000 users outgrows the response cache
(capacity 1,024 per route), so it measures the cache, not the token cache.

Run:  python benchmarks/users_bench.py [--pattern miss|hit] [--big 100000] [--pairs 7]
      ASGI_GUARD_JWT_CACHE_SIZE=10000 python benchmarks/users_bench.py   (the old default, for comparison)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overhead  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    if args.clock == "cpu":
        overhead.CLOCK = time.process_time
    hit = args.pattern == "hit"
    small = overhead.Driver(overhead.guard_full(None), overhead.tokens(args.small), hit)
    big = overhead.Driver(overhead.guard_full(None), overhead.tokens(args.big), hit)
    await small.run(args.small + 500, record=False)
    await big.run(args.big + 500, record=False)
    small_us: list[float] = []
    big_us: list[float] = []
    for p in range(args.pairs):
        for d in (small, big) if p % 2 == 0 else (big, small):
            (small_us if d is small else big_us).append(await d.run(args.n))
    ratios = [b / s for b, s in zip(big_us, small_us, strict=True)]
    print(
        json.dumps(
            {
                "pattern": args.pattern,
                "clock": args.clock,
                "jwt_cache_size": os.environ.get("ASGI_GUARD_JWT_CACHE_SIZE", "default"),
                f"users_{args.small}_us": round(statistics.median(small_us), 1),
                f"users_{args.big}_us": round(statistics.median(big_us), 1),
                "ratio": round(statistics.median(ratios), 3),
                "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "statuses": [dict(small.statuses), dict(big.statuses)],
                "load_avg": os.getloadavg()[0],
            }
        )
    )
    await small.side.close()
    await big.side.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pattern", choices=("hit", "miss"), default="miss")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("-n", type=int, default=2000, help="requests per block")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time")
    asyncio.run(main(parser.parse_args()))
