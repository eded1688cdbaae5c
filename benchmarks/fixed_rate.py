"""Tail latency at a fixed request rate: the demo's cached GET against the same handler on bare FastAPI.

A closed-loop client (locust, wrk) runs each side as fast as it goes, so a faster side also answers
more requests and their latencies are not comparable. Here an open-loop client sends the same
number of requests per second to both sides (vegeta: `attack -rate`, at most 50 connections), and
we compare p50/p95/p99 at that equal rate.

- asgi-guard: `asgi_guard.demo.app:app` (`GET /jobs/{resource_id}`: JWT, a 30 s per-user cache,
  metrics on; the embedded backend), one uvicorn worker;
- bare FastAPI: the same handler body without the guard (benchmarks/fixed_rate_bare.py), one worker;
- each of 50 users sends its own token to its own resource, so after its first request every answer
  from the guard is a cache hit (what "the demo's cached GET" means); the bare app runs the handler.

Sides alternate (A B, then B A, ...); a warm-up at the same rate is discarded before each measure.

Run:  python benchmarks/fixed_rate.py [--rate 300] [--duration 15] [--rounds 2]
Needs vegeta (Go): `go install github.com/tsenart/vegeta/v12@v12.13.0` (into $GOBIN, or set VEGETA).
Writes benchmarks/results/fixed_rate.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _services import free_port, start_uvicorn, stop_group, wait_port  # noqa: E402

SECRET = "fixed-rate-secret-fixed-rate-secret-0123"
USERS = 50
SIDES = {
    "asgi-guard (demo)": os.environ.get("FIXED_RATE_GUARD_APP", "asgi_guard.demo.app:app"),
    "bare FastAPI": "fixed_rate_bare:app",
}


def vegeta_binary() -> str:
    for candidate in (
        os.environ.get("VEGETA"),
        shutil.which("vegeta"),
        str(Path(os.environ.get("GOBIN") or Path.home() / "go" / "bin") / "vegeta"),
        str(Path.home() / ".cache" / "asgi-guard" / "bin" / "vegeta"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit(
        "fixed_rate.py needs vegeta: go install github.com/tsenart/vegeta/v12@v12.13.0 "
        "(or set VEGETA to its path)"
    )


def targets(port: int, work: Path) -> Path:
    """One line per user: its own token and its own resource (vegeta cycles through them)."""
    exp = int(time.time()) + 3600
    lines = []
    for i in range(USERS):
        token = jwt.encode({"sub": f"user{i}", "exp": exp}, SECRET, "HS256")
        lines.append(f"GET http://127.0.0.1:{port}/jobs/r{i}\nAuthorization: Bearer {token}\n")
    path = work / f"targets-{port}.txt"
    path.write_text("\n".join(lines))
    return path


def attack(vegeta: str, target_file: Path, rate: int, seconds: float) -> dict[str, Any]:
    """vegeta attack at `rate`/s for `seconds`; its JSON report (latencies in ns)."""
    attack_cmd = [
        vegeta,
        "attack",
        f"-targets={target_file}",
        f"-rate={rate}/s",
        f"-duration={seconds}s",
        "-connections=50",
        "-max-connections=50",
        "-workers=50",
        "-max-workers=50",
        "-timeout=10s",
    ]
    attack_out = subprocess.run(attack_cmd, capture_output=True, check=True, timeout=seconds + 60).stdout
    report = subprocess.run(
        [vegeta, "report", "-type=json"], input=attack_out, capture_output=True, check=True, timeout=60
    ).stdout
    result: dict[str, Any] = json.loads(report)
    return result


def run_side(vegeta: str, name: str, app: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "ASGI_GUARD_JWT_SECRET": SECRET,
    }
    log = open(work / f"uvicorn-{port}.log", "wb")  # noqa: SIM115 - closed in finally
    proc = start_uvicorn(app, port, env, log)
    try:
        wait_port(port, 30, proc)
        target_file = targets(port, work)
        attack(vegeta, target_file, args.rate, args.warmup)
        report = attack(vegeta, target_file, args.rate, args.duration)
    finally:
        stop_group(proc)
        log.close()
    lat = report["latencies"]
    return {
        "side": name,
        "requests": report["requests"],
        "rate": round(report["rate"], 1),
        "throughput": round(report["throughput"], 1),
        "success": report["success"],
        "status_codes": report["status_codes"],
        "p50_ms": lat["50th"] / 1e6,
        "p95_ms": lat["95th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
        "max_ms": lat["max"] / 1e6,
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Tail latency at a fixed rate: the demo's cached GET vs bare FastAPI",
        "",
        f"`{doc['command']}`, {doc['when']}: vegeta at {doc['rate']} req/s for {doc['duration']} s per run "
        f"(after a {doc['warmup']} s warm-up), at most 50 connections, {USERS} users with their own tokens; "
        "one uvicorn worker per side, on the 2-core machine it shares with the client. Load average "
        f"{doc['load'][0]:.2f} -> {doc['load'][1]:.2f}. Latencies in ms, as vegeta measures them.",
        "",
        "| round | side | requests | achieved req/s | success | p50 | p95 | p99 | max | statuses |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["runs"]:
        lines.append(
            f"| {r['round']} | {r['side']} | {r['requests']} | {r['throughput']} | {r['success']:.3f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
            f"{', '.join(f'{k}:{v}' for k, v in r['status_codes'].items())} |"
        )
    lines += ["", f"p99 ratio asgi-guard / bare FastAPI, per round: {doc['p99_ratios']} (target <= 1.5).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=300, help="requests per second, both sides")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at the same rate, discarded")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    vegeta = vegeta_binary()
    load0 = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="asgi-guard-fixed-rate-") as tmp:
        work = Path(tmp)
        items = list(SIDES.items())
        for rnd in range(args.rounds):
            for name, app in items if rnd % 2 == 0 else reversed(items):
                result = run_side(vegeta, name, app, args, work)
                result["round"] = rnd + 1
                runs.append(result)
                print(json.dumps(result))
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["side"]] = r["p99_ms"]
    names = list(SIDES)
    doc = {
        "command": "python benchmarks/fixed_rate.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "rate": args.rate,
        "duration": args.duration,
        "warmup": args.warmup,
        "load": [load0, os.getloadavg()[0]],
        "runs": runs,
        "p99_ratios": [round(v[names[0]] / v[names[1]], 2) for v in by_round.values()],
    }
    out = HERE / "results" / "fixed_rate"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    text = markdown(doc)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
