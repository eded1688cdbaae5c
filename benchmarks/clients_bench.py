"""The Valkey client's own cost: valkey-py (what asgi-guard uses) against valkey-glide, one EVALSHA.

On Valkey the guard's per-request floor is the client (see floors.py): a call through valkey-py's
asyncio client costs far more than the server's work. valkey-glide (a Rust core behind a Python API)
multiplexes every call over one connection and pipelines concurrent calls automatically. This measures,
against one valkey-server on loopback, with the same small script (INCR + PEXPIRE, what a fixed-window
limit does), valkey-py alone, valkey-py as asgi-guard calls it by default (through
`asgi_guard.state.pipelining.AutoPipeline`) and valkey-glide:

- sequential: one call at a time, µs per call (the latency a single request sees);
- concurrent: 50 tasks calling at once, calls per second (what a loaded worker can push).

Run:  python benchmarks/clients_bench.py [--calls 4000] [--rounds 2]
Writes benchmarks/results/clients.md and .json. Needs the `bench` extra (valkey-glide).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _services import start_valkey  # noqa: E402

SCRIPT = "local v = redis.call('INCR', KEYS[1]); redis.call('PEXPIRE', KEYS[1], 60000); return v"
CONCURRENCY = 50


async def measure(call: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float]:
    """(µs per sequential call, calls per second with CONCURRENCY tasks), after a warm-up of both
    (connections opened, code paths hot: small --calls otherwise measure the start)."""
    for _ in range(200):
        await call()
    for _ in range(4):  # CONCURRENCY at a time: the plain client's pool holds no more
        await asyncio.gather(*(call() for _ in range(CONCURRENCY)))
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    sequential = (time.perf_counter() - start) / calls * 1e6

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls // CONCURRENCY) for _ in range(CONCURRENCY)))
    return sequential, calls / (time.perf_counter() - start)


async def valkey_py(port: int, calls: int) -> tuple[float, float]:
    import valkey.asyncio as valkey_asyncio

    client = valkey_asyncio.Valkey(host="127.0.0.1", port=port, max_connections=CONCURRENCY)
    try:
        sha = await client.script_load(SCRIPT)
        return await measure(lambda: client.evalsha(sha, 1, "bench-clients"), calls)
    finally:
        await client.aclose()


async def valkey_py_pipelined(port: int, calls: int) -> tuple[float, float]:
    """valkey-py through asgi-guard's AutoPipeline (`PoolingConfig.auto_pipeline`, the default):
    calls made while another is in flight go out in one pipeline per event-loop turn."""
    import valkey.asyncio as valkey_asyncio

    from asgi_guard.state.pipelining import AutoPipeline

    client = valkey_asyncio.Valkey(host="127.0.0.1", port=port, max_connections=CONCURRENCY)
    try:
        script = client.register_script(SCRIPT)
        await script(keys=["bench-clients"])  # loaded
        pipeline = AutoPipeline(client)
        return await measure(lambda: pipeline.send(script, ["bench-clients"], ()), calls)
    finally:
        await client.aclose()


async def glide(port: int, calls: int) -> tuple[float, float]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script

    client = await GlideClient.create(GlideClientConfiguration([NodeAddress("127.0.0.1", port)]))
    try:
        script = Script(SCRIPT)
        return await measure(lambda: client.invoke_script(script, keys=["bench-clients"]), calls)
    finally:
        await client.close()


async def main(args: argparse.Namespace) -> None:
    server = start_valkey()
    load0 = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    try:
        for rnd in range(args.rounds):
            for name, bench in (
                ("valkey-py (asyncio)", valkey_py),
                ("valkey-py, auto-pipelined (asgi-guard's default)", valkey_py_pipelined),
                ("valkey-glide", glide),
            ):
                sequential, per_second = await bench(server.port, args.calls)
                rows.append({"round": rnd + 1, "client": name, "us": sequential, "per_second": per_second})
                print(rows[-1])
    finally:
        server.stop()
    versions = {p: metadata.version(p) for p in ("valkey", "libvalkey", "valkey-glide")}
    lines = [
        "# Valkey clients: one EVALSHA (INCR + PEXPIRE)",
        "",
        f"`python benchmarks/clients_bench.py --calls {args.calls} --rounds {args.rounds}`, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, one valkey-server on "
        f"loopback, load average {load0:.2f} -> {os.getloadavg()[0]:.2f} (2 cores, shared). "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        f"| round | client | sequential µs/call | {CONCURRENCY} concurrent calls/s |",
        "|---:|---|---:|---:|",
    ]
    lines += [f"| {r['round']} | {r['client']} | {r['us']:.1f} | {r['per_second']:.0f} |" for r in rows]
    default = args.calls == 4000 and args.rounds == 2  # other sizes are scratch (results/.gitignore)
    out = HERE / "results" / ("clients" if default else "clients-quick")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "versions": versions}, indent=2))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
