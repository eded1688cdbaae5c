"""Load test: benchmarks/load_app.py under uvicorn (1 worker), asgi-guard and the peer stack in turn,
on the embedded memory backend and then on a real valkey-server this script starts, driven by locust
headless with the mix in benchmarks/locustfile.py.

Run:  python benchmarks/run_load.py                 (20 s x 50 users per run, 5 runs: ~2 min)
      python benchmarks/run_load.py --quick         (6 s x 20 users)
      python benchmarks/run_load.py --duration 20 --users 50 --stacks guard,peer --backends memory,valkey

Stacks: `guard` (asgi-guard, default settings: 50 connections, 1 s pool wait and call bound,
automatic pipelining), `peer`, and on Valkey `guard-tuned`: asgi-guard with GuardSettings.pooling from
--guard-pooling (default max_connections 256, socket_timeout 2 s), to show whether the pool limits it.

Writes benchmarks/results/load[-quick].csv (req/s, errors, p50/p95/p99 per request type and run),
load[-quick].md and load[-quick].png (a full run with the default --out also refreshes the chart
docs/benchmarks.md shows, docs/assets/load.png). Everything it starts (valkey-server, uvicorn, locust) runs in its own
process group on loopback and is stopped in `finally`, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _services import ValkeyServer, free_port, resp, start_uvicorn, start_valkey, stop_group, wait_port  # noqa: E402

STACK_NAMES = {"guard": "asgi-guard", "peer": "peer stack"}


def stack_label(stack: str, pooling: str) -> str:
    """`guard`, `peer`, or `guard-tuned` (asgi-guard with GuardSettings.pooling = --guard-pooling)."""
    if stack == "guard-tuned":
        fields = ", ".join(f"{k}={v}" for k, v in json.loads(pooling).items())
        return f"asgi-guard ({fields})"
    return STACK_NAMES[stack]


FUNDED = 200
ORDER = ["anon read", "auth read", "POST job", "POST job unfunded", "POST job hot", "bad token", "Aggregated"]


def fund_guard_on_valkey(env: dict[str, str], users: list[str], credits: int) -> None:
    """The pinned way to fund users on Valkey: the `asgi-guard credits grant USER N` CLI (one process,
    many calls, so 200 users take a second rather than a minute)."""
    code = (
        "import sys, contextlib, io\n"
        "from asgi_guard.cli import main\n"
        "users, n = sys.argv[1].split(','), sys.argv[2]\n"
        "for u in users:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        rc = main(['credits', 'grant', u, n])\n"
        "    if rc: sys.exit(rc)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, ",".join(users), str(credits)], env=env, check=True, timeout=120
    )


def run_one(
    stack: str, backend: str, server: ValkeyServer | None, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One locust run against a fresh uvicorn; returns the locustfile's raw summary with labels."""
    port = free_port()
    secret = secrets.token_urlsafe(32)
    tag = f"{stack}-{backend}"
    label = stack_label(stack, args.guard_pooling)
    env = dict(os.environ)
    env = {k: v for k, v in env.items() if not k.startswith("ASGI_GUARD_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH", "")) if p),
            "BENCH_STACK": "peer" if stack == "peer" else "guard",
            "BENCH_GUARD_POOLING": args.guard_pooling if stack == "guard-tuned" else "",
            "BENCH_VALKEY_URL": server.url if server else "",
            "BENCH_JWT_SECRET": secret,
            "BENCH_FUNDED": str(FUNDED),
            "BENCH_OUTBOX": str(work / f"outbox-{tag}.sqlite3"),
            "BENCH_TRACING": "1" if args.tracing else "0",
            "BENCH_STATUS_OUT": str(work / f"status-{tag}.json"),
            "ASGI_GUARD_KEY_PREFIX": f"bench-{backend}",
        }
    )
    if server:
        resp(server.port, "FLUSHALL")
        if stack != "peer":
            cli_env = dict(env, ASGI_GUARD_VALKEY_URL=server.url)
            fund_guard_on_valkey(cli_env, [f"user{i}" for i in range(FUNDED)] + ["hot-user"], 1_000_000)
    app_log = open(work / f"uvicorn-{tag}.log", "wb")  # noqa: SIM115 - closed in finally
    app_proc = locust_proc = None
    try:
        app_proc = start_uvicorn("load_app:app", port, env, app_log)
        wait_port(port, 30, app_proc)
        csv_prefix = work / f"locust-{tag}"
        locust_log = open(work / f"locust-{tag}.log", "wb")  # noqa: SIM115
        print(
            f"== {label} on {backend}: uvicorn on 127.0.0.1:{port}, locust -u {args.users} -t {args.duration}s",
            flush=True,
        )
        locust_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(HERE / "locustfile.py"),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                f"{args.duration}s",
                "--host",
                f"http://127.0.0.1:{port}",
                "--csv",
                str(csv_prefix),
                "--only-summary",
                "--stop-timeout",
                "5",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            stdout=locust_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        load_before = os.getloadavg()[0]
        try:
            locust_proc.wait(args.duration + 60)
        finally:
            locust_log.close()
        load_after = os.getloadavg()[0]
        if app_proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited early; see {work}/uvicorn-{tag}.log")
        summary_file = work / f"status-{tag}.json"
        if not summary_file.exists():
            raise RuntimeError(f"locust wrote no {summary_file.name}; see {csv_prefix}.log")
        summary = json.loads(summary_file.read_text())
        summary_file.unlink()
        # the machine is shared: say how busy it was
        return {"label": label, "backend": backend, "load": [load_before, load_after], **summary}
    finally:
        stop_group(locust_proc)
        stop_group(app_proc)
        app_log.close()


def pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else 0.0


def merge(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows per request type for one stack and backend over its rounds: requests and statuses summed,
    req/s = requests / summed run time, percentiles over every response time."""
    seconds = sum(r["seconds"] for r in runs)
    names = [n for n in ORDER if any(n in r["raw"] for r in runs)]
    names += sorted({n for r in runs for n in r["raw"]} - set(names))
    rows = []
    for name in [*names, "Aggregated"]:
        parts = [p for r in runs for n, p in r["raw"].items() if name in ("Aggregated", n)]
        times = sorted(t for p in parts for t in p["times"])
        codes: dict[str, int] = {}
        for p in parts:
            for code, count in p["statuses"].items():
                codes[code] = codes.get(code, 0) + count
        rows.append(
            {
                "stack": runs[0]["label"],
                "backend": runs[0]["backend"],
                "name": name,
                "requests": len(times),
                "errors": sum(p["errors"] for p in parts),
                "rps": round(len(times) / seconds, 1) if seconds else 0.0,
                "p50_ms": pct(times, 0.50),
                "p95_ms": pct(times, 0.95),
                "p99_ms": pct(times, 0.99),
                "statuses": " ".join(f"{k}:{v}" for k, v in sorted(codes.items())),
                "rounds": len(runs),
                "seconds": round(seconds, 1),
                "machine_load": " ".join(f"{r['load'][0]:.1f}->{r['load'][1]:.1f}" for r in runs),
            }
        )
    return rows


def write_outputs(rows: list[dict[str, Any]], base: Path, args: argparse.Namespace, seconds: float) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    with base.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    versions = []
    for name in (
        "asgi-guard",
        "fastapi",
        "starlette",
        "uvicorn",
        "locust",
        "slowapi",
        "fastapi-cache2",
        "prometheus-fastapi-instrumentator",
        "opentelemetry-sdk",
        "redis",
        "valkey",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    lines = [
        "# Load test: asgi-guard vs the peer stack under locust",
        "",
        f"`{args.command}`, {time.strftime('%Y-%m-%d %H:%M')}, {seconds:.0f} s in all. One uvicorn worker "
        f"serving benchmarks/load_app.py, locust headless (FastHttpUser, no wait) with {args.users} users "
        f"spawned at {args.spawn_rate}/s for {args.duration} s, on the same 2-core machine "
        f"({platform.machine()}, Python {platform.python_version()}, shared with other work), tracing "
        f"{'on (SDK provider, BatchSpanProcessor, spans dropped after counting)' if args.tracing else 'off'}. "
        "Errors = responses outside the statuses expected for the request type (see locustfile.py); "
        "latencies in ms, as locust measures them (client side, including locust's own time); req/s = "
        "requests / (test stop - test start), summed over rounds. Machine load = the 1-minute load average "
        "before -> after each round (a run itself adds about 2: uvicorn and locust; more means other work "
        f"shared the cores). {args.rounds} round(s) per stack, alternating stacks (A B, then B A, ...).",
        "",
        "| backend | stack | request type | requests | req/s | errors | p50 | p95 | p99 | statuses | machine load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        bold = "**" if r["name"] == "Aggregated" else ""
        lines.append(
            f"| {r['backend']} | {r['stack']} | {bold}{r['name']}{bold} | {r['requests']} | {bold}{r['rps']}{bold} | "
            f"{r['errors']} | {r['p50_ms']:g} | {r['p95_ms']:g} | {bold}{r['p99_ms']:g}{bold} | {r['statuses']} | "
            + (f"{r['machine_load']} |" if bold else " |")
        )
    if any("503" in r["statuses"] for r in rows):
        lines += [
            "",
            "503s mean a Valkey call of asgi-guard overran its bound (GuardSettings.pooling: 50 "
            "connections, 1 s pool wait and call bound by default), mostly waiting behind a busy event "
            "loop; the rate limit fails closed (503 'the rate_limit backend is unavailable'), the cache "
            "fails open. The guard-tuned rows run the same app with --guard-pooling.",
        ]
    lines += [
        "",
        f"![req/s and p99 per request type]({base.with_suffix('.png').name})",
        "",
        "Versions: " + ", ".join(versions),
        "",
    ]
    base.with_suffix(".md").write_text("\n".join(lines))
    chart(rows, base.with_suffix(".png"))
    print("\n".join(lines))


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted({(r["backend"], r["stack"]) for r in rows}, key=lambda x: (x[0] != "memory", x[1]))
    names = [n for n in ORDER if any(r["name"] == n for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        by_name = {r["name"]: r for r in rows if (r["backend"], r["stack"]) == run}
        xs = [j + i * width for j in range(len(names))]
        axes[0].bar(
            xs, [by_name.get(n, {}).get("rps", 0) for n in names], width, label=f"{run[1]} ({run[0]})"
        )
        axes[1].bar(
            xs, [by_name.get(n, {}).get("p99_ms", 0) for n in names], width, label=f"{run[1]} ({run[0]})"
        )
    for ax, title in zip(
        axes, ("requests per second (higher is better)", "p99 latency, ms (lower is better)"), strict=True
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(names))])
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="6 s x 20 users per run")
    parser.add_argument("--duration", type=int, default=20, help="seconds per run (default 20)")
    parser.add_argument("--users", type=int, default=50, help="locust users (default 50)")
    parser.add_argument("--spawn-rate", type=int, default=50)
    parser.add_argument(
        "--stacks",
        default="guard,guard-tuned,peer",
        help="guard, peer, guard-tuned (asgi-guard with --guard-pooling, Valkey runs only); default all three",
    )
    parser.add_argument(
        "--guard-pooling",
        default='{"max_connections": 256, "socket_timeout": 2.0}',
        help="JSON GuardSettings.pooling for the guard-tuned stack",
    )
    parser.add_argument("--backends", default="memory,valkey")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs per stack, alternating stacks, merged (evens out a shared machine); default 1",
    )
    parser.add_argument(
        "--no-tracing", dest="tracing", action="store_false", help="no tracer provider in the apps"
    )
    parser.add_argument(
        "--out", help="results path without extension (default benchmarks/results/load[-quick])"
    )
    parser.add_argument("--render", metavar="CSV", help=argparse.SUPPRESS)
    parser.add_argument("--render-command", help=argparse.SUPPRESS)
    parser.add_argument("--render-seconds", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.users, args.spawn_rate = 6, 20, 20
    args.command = "python benchmarks/run_load.py " + " ".join(sys.argv[1:])
    if args.render:  # re-write the markdown and chart from a CSV this script wrote
        with open(args.render, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            r.update(
                rps=float(r["rps"]),
                p50_ms=float(r["p50_ms"]),
                p95_ms=float(r["p95_ms"]),
                p99_ms=float(r["p99_ms"]),
            )
        args.command, args.rounds = args.render_command or args.command, int(rows[0]["rounds"])
        write_outputs(rows, Path(args.render).with_suffix(""), args, float(args.render_seconds or 0))
        return
    stacks = [s for s in args.stacks.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="asgi-guard-load-"))
    server: ValkeyServer | None = None
    rows: list[dict[str, Any]] = []
    try:
        for backend in backends:
            if backend == "valkey" and server is None:
                server = start_valkey()
            # pooling only shapes the Valkey client
            here = [s for s in stacks if not (s == "guard-tuned" and backend != "valkey")]
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in here}
            for r in range(args.rounds):
                for stack in here if r % 2 == 0 else list(reversed(here)):
                    runs[stack].append(
                        run_one(stack, backend, server if backend == "valkey" else None, args, work)
                    )
            for stack in here:
                rows += merge(runs[stack])
    finally:
        if server is not None:
            server.stop()
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    base = Path(args.out) if args.out else HERE / "results" / ("load-quick" if args.quick else "load")
    write_outputs(rows, base, args, time.time() - started)
    if not args.out and not args.quick:  # the full run is the one docs/benchmarks.md shows
        shutil.copyfile(base.with_suffix(".png"), HERE.parent / "docs" / "assets" / "load.png")


if __name__ == "__main__":
    main()
