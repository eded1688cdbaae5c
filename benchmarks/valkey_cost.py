"""Valkey server cost per request: asgi-guard's full stack against the peer stack (tracing off).

For each side and pattern (cache hit / miss, one user), on a private valkey-server: commands per
request (INFO commandstats, which counts the commands Lua scripts run too), commands per script call,
reads per request (round trips) and the server's main-thread CPU per request (INFO
used_cpu_{user,sys}_main_thread delta, less the idle rate measured just before, over `--n` requests).

Run:  python benchmarks/valkey_cost.py [--n 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _services import ValkeyServer, commandstats, resp, start_valkey  # noqa: E402
from overhead import Driver, guard_full, peer_full, tokens  # noqa: E402


def _cpu(server: ValkeyServer) -> tuple[float, dict[str, str]]:
    snap = server.snapshot()
    user = snap.get("used_cpu_user_main_thread") or snap["used_cpu_user"]
    sys_ = snap.get("used_cpu_sys_main_thread") or snap["used_cpu_sys"]
    return float(user) + float(sys_), snap


async def measure(server: ValkeyServer, side_name: str, hit: bool, n: int) -> dict[str, Any]:
    resp(server.port, "FLUSHALL")
    side = guard_full(server.url) if side_name == "asgi-guard" else peer_full(server.redis_url, False)
    driver = Driver(side, tokens(1), hit)
    try:
        await driver.run(300, record=False)  # scripts loaded, the hit's entry in place
        idle0, _ = _cpu(server)
        time.sleep(1.0)
        idle1, _ = _cpu(server)
        idle_rate = idle1 - idle0  # CPU seconds per wall second with no traffic (cron, INFO)
        cpu0, snap0 = _cpu(server)
        start = time.perf_counter()
        await driver.run(n, record=True)
        wall = time.perf_counter() - start
        cpu1, snap1 = _cpu(server)
    finally:
        await side.close()
    c0, c1 = commandstats(snap0), commandstats(snap1)
    delta = {k: c1[k] - c0.get(k, 0) for k in c1 if k != "info" and c1[k] != c0.get(k, 0)}
    reads = int(snap1["total_reads_processed"]) - int(snap0["total_reads_processed"]) - 1
    return {
        "side": side_name,
        "cache": "hit" if hit else "miss",
        "statuses": dict(driver.statuses),
        "commands": round(sum(delta.values()) / n, 2),
        "reads": round(reads / n, 2),
        "cpu_us": round((cpu1 - cpu0 - idle_rate * wall) / n * 1e6, 1),
        "by_command": {k: round(v / n, 2) for k, v in sorted(delta.items())},
    }


async def main(n: int) -> None:
    server = start_valkey()
    try:
        print("| side | cache | Valkey cmds/req | reads/req | server CPU µs/req | statuses |")
        print("|---|---|---:|---:|---:|---|")
        rows = []
        for hit in (True, False):
            for side in ("asgi-guard", "peer stack"):
                row = await measure(server, side, hit, n)
                rows.append(row)
                print(
                    f"| {row['side']} | {row['cache']} | {row['commands']:g} | {row['reads']:g} | "
                    f"{row['cpu_us']:g} | {row['statuses']} |",
                    flush=True,
                )
        for row in rows:
            print(f"{row['side']} {row['cache']}: {row['by_command']}")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="requests per side and pattern")
    asyncio.run(main(parser.parse_args().n))
