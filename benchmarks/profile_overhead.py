"""Profile one overhead.py pattern with pyinstrument (the guard side only), to see where time goes.

Run:  python benchmarks/profile_overhead.py --pattern miss --tracing on [--backend memory] [--users 1]
      python benchmarks/profile_overhead.py --pattern ratelimit --tracing off
Prints pyinstrument's text tree (pip install pyinstrument; in the `bench` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overhead  # noqa: E402
from _services import start_valkey  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    from pyinstrument import Profiler

    if args.tracing == "on":
        overhead.install_tracing()
    server = start_valkey() if args.backend == "valkey" else None
    try:
        url = server.url if server else None
        if args.pattern == "ratelimit":
            side = overhead.guard_rate_limit_only(url)
            driver = overhead.Driver(side, None, True)
        else:
            side = overhead.guard_full(url)
            driver = overhead.Driver(side, overhead.tokens(args.users), args.pattern == "hit")
        await driver.run(args.users + 200, record=False)
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        us = await driver.run(args.n)
        profiler.stop()
        await side.close()
        print(f"{args.pattern} tracing {args.tracing} {args.backend}: {us:.1f} µs/request")
        print(profiler.output_text(unicode=False, color=False, show_all=args.all))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pattern", choices=("hit", "miss", "ratelimit"), default="miss")
    parser.add_argument("--tracing", choices=("on", "off"), default="on")
    parser.add_argument("--backend", choices=("memory", "valkey"), default="memory")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--all", action="store_true", help="show library frames too")
    asyncio.run(main(parser.parse_args()))
