"""Processes the chaos run abuses: a durable valkey-server, the Pulsar broker and uvicorn workers.

valkey-server runs with `appendonly yes` and `appendfsync always`, so a SIGKILL loses nothing it
acknowledged (the reconciliation is exact only if the server keeps what it said it kept). Every
process runs in its own session, so SIGSTOP/SIGCONT/SIGKILL reach it and its children alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from asgi_guard_dev.local import free_port
from asgi_guard_dev.pulsar import PulsarBroker
from asgi_guard_dev.valkey import ValkeyNode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class DurableValkey(ValkeyNode):
    """A valkey-server with an fsync'd append-only file, which the chaos run stops, kills and restarts
    on the same port."""

    durable: bool = True

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}/0"

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)  # a stopped server cannot act on SIGTERM
        super().stop()


def broker_signal(broker: PulsarBroker, sig: int) -> None:
    """Signal the broker's whole process group (the JVM is a child of bin/pulsar)."""
    if broker.process is not None and broker.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(broker.process.pid, sig)


def broker_kill(broker: PulsarBroker) -> None:
    process = broker.process
    if process is None:
        return
    broker_signal(broker, signal.SIGCONT)
    broker_signal(broker, signal.SIGKILL)
    process.wait(10)
    broker.process = None


@dataclass
class Uvicorn:
    """`uvicorn chaos_app:app --workers N` on a loopback port."""

    env: dict[str, str]
    workdir: Path
    workers: int = 2
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.port = self.port or free_port()
        log = open(self.workdir / "uvicorn.log", "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "chaos_app:app",
                "--app-dir",
                str(HERE),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
                "--timeout-keep-alive",
                "120",  # longer than any idle gap: no keep-alive close races the next request
                "--timeout-graceful-shutdown",
                "20",
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited:\n{self.log()[-3000:]}")
            if self._startups() >= self.workers and self._answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"uvicorn did not start within {timeout}s:\n{self.log()[-3000:]}")

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
            return True
        return False

    def _startups(self) -> int:
        return len(list(self.workdir.glob("started-*")))

    def log(self) -> str:
        path = self.workdir / "uvicorn.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM (graceful: lifespan shutdown flushes the publishers), SIGKILL past `timeout`."""
        process = self.process
        self.process = None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
