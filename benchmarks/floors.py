"""Where the floor is: what each policy adds, and what no guard can go below, in overhead.py's harness.

overhead.py gives ratios; this script explains them. It measures, in one run, with the same raw ASGI
call loop and paired blocks:

1. per-policy cost on the cache-miss and cache-hit patterns (memory backend): the same FastAPI handler
   bare, then with policies added one at a time (security, rate limit, cache, job span, metrics: the
   last row is overhead.py's full stack); each row's difference to the one above is what that
   policy adds per request;
2. the floor of the full-stack / peer-stack ratio: the bare handler already costs a share of the peer's
   time on a miss (a guard that added nothing would still run the handler), so the target ratio cannot
   be reached below `bare / peer`; with tracing on both sides, each span the SDK records costs the same
   on both sides, so `(bare + spans) / peer` is the floor with tracing;
3. on Valkey, one round trip of the client each side uses (valkey-py for asgi-guard, redis-py for the
   peer), measured alone (EVALSHA of `return 1` and a GET): a hit needs one, a miss two, so
   `round trips x RTT` is a floor no choice of commands can lower.

Run:  python benchmarks/floors.py [--tracing on|off] [--quick]
Writes benchmarks/results/floors[-quick].md and .json.
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overhead  # noqa: E402
from _services import start_valkey  # noqa: E402
from fastapi import FastAPI  # noqa: E402

POLICIES: dict[str, dict[str, Any]] = {
    "security (JWT + scope)": {
        "security": {"auth_type_required": "jwt", "user_permissions_required": [overhead.SCOPE]}
    },
    "rate limit (fixed window)": {"rate_limit": overhead.fixed_window()},
    "cache (60 s)": {"cache": {"enabled": True, "default": {"cache_ttl": 60}}},
    "job span (tracing.function_name)": {"tracing": {"function_name": "item", "trace_label": "item"}},
    "metrics (histogram + request counters)": {
        "metrics": {"histogram_name": "bench_floor_item_latency_seconds"}
    },
}


def fastapi_side(policies: dict[str, Any] | None, metrics: bool) -> overhead.Side:
    """The overhead.py handler on FastAPI, bare (None) or behind asgi-guard with `policies`."""
    from asgi_guard import JobConfig, RouteRegistry, install

    app = FastAPI(telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"item_id": item_id}

    if policies is None:
        return overhead.Side("bare FastAPI", app)
    registry = RouteRegistry()
    registry.register("/items/{item_id}", JobConfig(endpoint_name="item", **policies), methods=["GET"])
    settings = overhead.guard_settings(
        None, jwt_secret=overhead.SECRET, metrics_path="/metrics" if metrics else ""
    )
    runtime = overhead.guard_runtime(settings)
    install(app, registry, runtime=runtime)
    return overhead.Side("asgi-guard", app, runtime.shutdown)


async def blocks(drivers: dict[str, overhead.Driver], n: int, pairs: int) -> dict[str, float]:
    """Median µs per request of each driver over `pairs` rounds, the order reversed every round."""
    for driver in drivers.values():
        await driver.run(n, record=False)
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    items = list(drivers.items())
    for p in range(pairs):
        for name, driver in items if p % 2 == 0 else reversed(items):
            samples[name].append(await driver.run(n))
    return {name: statistics.median(values) for name, values in samples.items()}


async def stage_costs(hit: bool, n: int, pairs: int) -> dict[str, Any]:
    """Policies added one at a time (each row has every policy above it), plus the peer stack."""
    auth = overhead.tokens(1)
    sides = {"bare FastAPI": fastapi_side(None, False)}
    if overhead.EXPORTER is not None:  # the server span alone: a route with no policy at all
        sides["+ server span (empty JobConfig)"] = fastapi_side({}, False)
    policies: dict[str, Any] = {}
    for name, policy in POLICIES.items():
        policies = {**policies, **policy}
        sides[f"+ {name}"] = fastapi_side(policies, "metrics" in policies)
    sides["peer stack"] = overhead.peer_full(None, overhead.EXPORTER is not None)
    drivers = {name: overhead.Driver(side, auth, hit) for name, side in sides.items()}
    try:
        us = await blocks(drivers, n, pairs)
    finally:
        for side in sides.values():
            await side.close()
    return {
        "us": us,
        "statuses": {name: dict(d.statuses) for name, d in drivers.items()},
        "cache": {name: dict(d.verdicts) for name, d in drivers.items()},
    }


async def round_trips(n: int) -> dict[str, float]:
    """µs per sequential round trip, each client alone against one valkey-server."""
    import redis.asyncio as redis_asyncio
    import valkey.asyncio as valkey_asyncio

    server = start_valkey()
    out: dict[str, float] = {}
    try:
        for name, module in (("valkey-py", valkey_asyncio), ("redis-py", redis_asyncio)):
            client = module.from_url(server.url if name == "valkey-py" else server.redis_url)
            try:
                sha = await client.script_load("return 1")
                for label, call in (
                    ("EVALSHA return 1", lambda c=client, s=sha: c.evalsha(s, 0)),
                    ("GET", lambda c=client: c.get("floor-missing")),
                ):
                    for _ in range(200):
                        await call()
                    start = time.perf_counter()
                    for _ in range(n):
                        await call()
                    out[f"{name} {label}"] = (time.perf_counter() - start) / n * 1e6
            finally:
                await client.aclose()
    finally:
        server.stop()
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Where the floor is (overhead.py's harness)",
        "",
        f"`{doc['command']}`, {doc['when']}, tracing {doc['tracing']}, load average "
        f"{doc['load'][0]:.2f} -> {doc['load'][1]:.2f} (2 cores, shared). Memory backend, one user, "
        "the same FastAPI handler throughout; µs = median block of sequential requests.",
        "",
    ]
    for pattern in ("miss", "hit"):
        us = doc[pattern]["us"]
        names = list(us)
        bare, peer, full = us["bare FastAPI"], us["peer stack"], us[names[-2]]
        lines += [
            f"## Cache {pattern}: policies added one at a time",
            "",
            "| side | µs/request | added by this row | cache |",
            "|---|---:|---:|---|",
        ]
        previous = bare
        for name in names:
            value = us[name]
            added = value - (bare if name == "peer stack" else previous)
            verdicts = ", ".join(f"{k or '-'}:{v}" for k, v in doc[pattern]["cache"][name].items())
            lines.append(f"| {name} | {value:.1f} | {added:+.1f} | {verdicts} |")
            previous = value
        lines += [
            "",
            f"- full stack / peer stack here: **{full / peer:.2f}**; the floor `bare / peer` (a guard "
            f"that added nothing): **{bare / peer:.2f}**.",
            f"- the guard adds {full - bare:.1f} µs, the peer's add-ons {peer - bare:.1f} µs: "
            f"**{(full - bare) / (peer - bare):.2f}** of the peer's added cost.",
            "",
        ]
    rt = doc["round_trips"]
    lines += ["## One Valkey round trip, each client alone", "", "| client, command | µs |", "|---|---:|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in rt.items()]
    valkey_rt = rt["valkey-py EVALSHA return 1"]
    redis_rt = rt["redis-py GET"]
    hit_full = list(doc["hit"]["us"].values())[-2]
    hit_floor = (hit_full + valkey_rt) / (doc["hit"]["us"]["peer stack"] + 2 * redis_rt)
    lines += [
        "",
        f"On Valkey a guarded hit is at least its memory-backend cost plus one round trip, and the peer's "
        f"hit its memory cost plus two: the ratio cannot go below about **{hit_floor:.2f}** on a hit "
        "with these clients, whatever the scripts do.",
        "",
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    if args.tracing == "on":
        overhead.install_tracing()
    n, pairs = (150, 3) if args.quick else (500, 7)
    load0 = os.getloadavg()[0]
    doc: dict[str, Any] = {
        "command": "python benchmarks/floors.py"
        + (" --quick" if args.quick else "")
        + f" --tracing {args.tracing}",
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "tracing": args.tracing,
        "miss": await stage_costs(False, n, pairs),
        "hit": await stage_costs(True, n, pairs),
        "round_trips": await round_trips(300 if args.quick else 2000),
    }
    doc["load"] = [load0, os.getloadavg()[0]]
    out = HERE / "results" / f"floors-tracing-{args.tracing}{'-quick' if args.quick else ''}"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    text = markdown(doc)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracing", choices=("on", "off"), default="on")
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args()))
