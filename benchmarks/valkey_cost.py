"""Valkey server cost per request: asgi-guard's full stack against the peer stack (tracing off).

For each side and pattern (cache hit / miss, one user), on a private valkey-server: commands per
request (INFO commandstats, which counts the commands Lua scripts run too), commands per script call,
reads per request (round trips) and the server's main-thread CPU per request (/proc schedstat,
else INFO used_cpu_*_main_thread; delta less the idle rate measured just before, over `--n`
requests; the median of `--repeat` runs, the sides alternating).

Run:  python benchmarks/valkey_cost.py [--n 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _services import ValkeyServer, commandstats, resp, start_valkey  # noqa: E402
from overhead import Driver, guard_full, peer_full, tokens  # noqa: E402


def _cpu(server: ValkeyServer) -> tuple[float, dict[str, str]]:
    """The server's main-thread CPU seconds (Linux schedstat: nanoseconds on CPU; else INFO's
    getrusage figures), and an INFO snapshot."""
    snap = server.snapshot()
    if server.proc is not None:
        with contextlib.suppress(OSError):
            return int(Path(f"/proc/{server.proc.pid}/schedstat").read_text().split()[0]) / 1e9, snap
    user = snap.get("used_cpu_user_main_thread") or snap["used_cpu_user"]
    sys_ = snap.get("used_cpu_sys_main_thread") or snap["used_cpu_sys"]
    return float(user) + float(sys_), snap


def _usec(snap: dict[str, str], command: str) -> int:
    """INFO commandstats' total microseconds of `command` (a script's time includes its commands')."""
    raw = snap.get(f"cmdstat_{command}", "")
    fields = dict(part.split("=", 1) for part in raw.split(",") if "=" in part)
    return int(fields.get("usec", 0))


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
    usec = {k: _usec(snap1, k) - _usec(snap0, k) for k in delta}
    reads = int(snap1["total_reads_processed"]) - int(snap0["total_reads_processed"]) - 1
    return {
        "side": side_name,
        "cache": "hit" if hit else "miss",
        "statuses": dict(driver.statuses),
        "commands": round(sum(delta.values()) / n, 2),
        "reads": round(reads / n, 2),
        "cpu_us": round((cpu1 - cpu0 - idle_rate * wall) / n * 1e6, 1),
        "by_command": {k: round(v / n, 2) for k, v in sorted(delta.items())},
        "usec_by_command": {k: round(v / n, 1) for k, v in sorted(usec.items())},
    }


async def main(n: int, repeat: int) -> None:
    server = start_valkey()
    lines = [
        "# Valkey cost per request: commands, round trips, server CPU",
        "",
        f"`python benchmarks/valkey_cost.py --n {n} --repeat {repeat}`, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"one valkey-server on loopback, load average {os.getloadavg()[0]:.2f} (2 cores, shared).",
        "",
    ]

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    try:
        say("| side | cache | Valkey cmds/req | reads/req | server CPU µs/req (median, range) | statuses |")
        say("|---|---|---:|---:|---:|---|")
        rows = []
        for hit in (True, False):
            runs: dict[str, list[dict[str, Any]]] = {"asgi-guard": [], "peer stack": []}
            for _ in range(repeat):  # the sides alternate: a load change hits both
                for side, done in runs.items():
                    done.append(await measure(server, side, hit, n))
            for done in runs.values():
                row = done[0]
                cpus = sorted(r["cpu_us"] for r in done)
                row["cpu_us"] = statistics.median(cpus)
                rows.append(row)
                say(
                    f"| {row['side']} | {row['cache']} | {row['commands']:g} | {row['reads']:g} | "
                    f"{row['cpu_us']:g} ({cpus[0]:g}-{cpus[-1]:g}) | {row['statuses']} |"
                )
        say("")
        for row in rows:
            say(f"- {row['side']} {row['cache']}: commands per request {row['by_command']}; µs per request")
            say(f"  by command (a script's includes its commands'): {row['usec_by_command']}")
    finally:
        server.stop()
    (HERE / "results" / "valkey_cost.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="requests per side and pattern")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row, alternating; CPU: median")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.repeat))
