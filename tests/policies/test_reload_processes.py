"""Reload under load in two uvicorn processes sharing Valkey: no request fails, both apply a new
limit within one second of the file changing, counters carry over, a bad file changes nothing.

Bounded: 2 servers x 4 client loops for about 3 s, then a few probes; loopback only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from guardkit import UNCROSSED_WINDOW

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def routes(limit: int) -> str:
    return f"""
[routes.items]
path = "/items"
methods = ["GET"]
rate_limit = {{ enabled = true, algo = "fixed_window", key_by = ["route"], fixed_window = {{ limit = {limit}, window = {UNCROSSED_WINDOW} }} }}
"""


def write(file: Path, text: str) -> float:
    """Replace the file as deploy tools do (write aside, rename); returns when it was swapped."""
    aside = file.with_suffix(".new")
    aside.write_text(text)
    os.replace(aside, file)
    return time.monotonic()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy(limit: int) -> str:
    return f'"fixed_window";q={limit};w={UNCROSSED_WINDOW}'


async def wait_until(
    http: httpx.AsyncClient, url: str, want_policy: str, status: int, since: float, within: float
) -> float:
    while True:
        response = await http.get(url)
        if response.headers.get("ratelimit-policy") == want_policy and response.status_code == status:
            return time.monotonic() - since
        assert time.monotonic() - since < within, (url, response.status_code, response.headers)
        await asyncio.sleep(0.01)


@pytest.mark.valkey
async def test_reload_under_load_in_two_processes(valkey_url: str, key_prefix: str, tmp_path: Path) -> None:
    file = tmp_path / "routes.toml"
    write(file, routes(1_000_000))
    env = {
        **os.environ,
        "ROUTES": str(file),
        "VALKEY_URL": valkey_url,
        "KEY_PREFIX": key_prefix,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "_reload_app:app", "--app-dir", str(HERE),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for port in ports
    ]  # fmt: skip
    urls = [f"http://127.0.0.1:{port}/items" for port in ports]
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 30
            for url in urls:  # up and serving the first config
                while True:
                    try:
                        if (await http.get(url)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "servers did not start"
                    await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the watchers are running (started with the lifespan)

            # -- load, and a limit change in the middle of it ----------------------------------
            seen: dict[str, list[tuple[float, int, str]]] = {url: [] for url in urls}
            failures: list[str] = []
            stop_at = time.monotonic() + 3.0

            async def loop(url: str) -> None:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    try:
                        response = await http.get(url)
                    except httpx.HTTPError as exc:
                        failures.append(f"{url}: {exc!r}")
                        continue
                    seen[url].append(
                        (started, response.status_code, response.headers.get("ratelimit-policy", ""))
                    )

            async def change() -> float:
                await asyncio.sleep(1.0)
                return write(file, routes(2_000_000))

            *_, written = await asyncio.gather(*(loop(url) for url in urls for _ in range(4)), change())
            assert failures == []
            for url in urls:
                statuses = {status for _, status, _ in seen[url]}
                assert statuses == {200}, (url, statuses)
                new = [t for t, _, p in seen[url] if p == policy(2_000_000)]
                assert new, f"{url} never applied the change"
                assert min(new) - written < 1.0, (url, min(new) - written)
                print(
                    f"{url}: {len(seen[url])} requests, new limit applied {min(new) - written:.3f} s after the write"
                )
                late_old = [t for t, _, p in seen[url] if p == policy(1_000_000) and t > written + 1.0]
                assert late_old == [], url
            # counters carried over: one shared count across both processes and both configs
            total = sum(len(v) for v in seen.values()) + 2  # + the start-up probes
            probe = await http.get(urls[0])
            assert probe.headers["ratelimit"].startswith(f'"fixed_window";r={2_000_000 - total - 1};')

            # -- a shrink is enforced by both within a second ----------------------------------
            written = write(file, routes(5))
            for url in urls:
                took = await wait_until(http, url, policy(5), 429, written, 1.0)
                print(f"{url}: shrunk limit enforced {took:.3f} s after the write")

            # -- a bad file changes nothing ----------------------------------------------------
            write(file, routes(5).replace("limit = 5", "limit = -5"))
            await asyncio.sleep(1.0)
            for url in urls:
                response = await http.get(url)
                assert (response.status_code, response.headers["ratelimit-policy"]) == (429, policy(5))
    finally:
        for server in servers:
            server.terminate()
        logs = [server.communicate(timeout=10)[1] for server in servers]
    for log in logs:
        assert "routes reload from" in log and "rejected" in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]
