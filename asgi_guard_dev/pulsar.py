"""Run a real Apache Pulsar standalone broker on loopback, from the official server distribution.

The distribution is fetched once with Maven (`mvn dependency:copy`, which verifies checksums and honours
the user's Maven settings and mirrors) into the cache directory
(`ASGI_GUARD_CACHE`, default `~/.cache/asgi-guard`), extracted once, and started as
`bin/pulsar standalone -nfw -nss` with free ports, a small heap and advertised address 127.0.0.1.
Used by `asgi-guard services up|down pulsar`, by the pytest fixture, and by CI
(`python -m asgi_guard_dev.pulsar fetch` warms the cache).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from asgi_guard_dev.local import cache_root, free_port, is_port_free

VERSION = os.environ.get("ASGI_GUARD_PULSAR_VERSION", "4.0.8")
ARTIFACT = "org.apache.pulsar:pulsar-server-distribution:{version}:tar.gz:bin"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy"
DEFAULT_MEM = "-Xms256m -Xmx512m -XX:MaxDirectMemorySize=256m"
# Serial GC and C1 only: a broker for tests starts faster and idles cheaper on a small box.
DEFAULT_GC = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+PerfDisableSharedMem"


class PulsarUnavailable(RuntimeError):
    """Java, Maven or the distribution is missing, so no broker can be started here."""


Reporter = Callable[[str, float, "float | None", str], None]
"""Progress callback: (task, done, total or None, note). Tasks: "download" (bytes), "unpack"
(compressed bytes read), "start" (seconds waited; note says which readiness check is pending)."""


def _quiet(task: str, done: float, total: float | None, note: str) -> None:
    """The default reporter: say nothing."""


def pulsar_cache() -> Path:
    return cache_root() / "pulsar"


def tarball_path(version: str = VERSION) -> Path:
    return pulsar_cache() / f"pulsar-server-distribution-{version}-bin.tar.gz"


def _maven_dir(version: str) -> Path:
    """Where Maven's local repository keeps the artifact while and after downloading it."""
    return (
        Path.home()
        / ".m2"
        / "repository"
        / "org"
        / "apache"
        / "pulsar"
        / "pulsar-server-distribution"
        / version
    )


def _bytes_in(folder: Path) -> int:
    """Bytes of the files in `folder` now (Maven writes the download there as it arrives)."""
    try:
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return 0


def fetch(version: str = VERSION, report: Reporter = _quiet, poll: float = 0.5) -> Path:
    """The distribution tarball (about 245 MB), fetched once with Maven; while `mvn` runs, the bytes
    that have arrived in its local repository are reported (total unknown: Maven does not say)."""
    target = tarball_path(version)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    mvn = os.environ.get("ASGI_GUARD_MVN") or shutil.which("mvn")
    if mvn is None:
        raise PulsarUnavailable(f"Maven (mvn) is not installed and {target} is not cached")
    artifact = ARTIFACT.format(version=version)
    watched = _maven_dir(version)
    report("download", 0, None, f"mvn dependency:copy {artifact}")
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [
                mvn,
                "-q",
                "-B",
                DEPENDENCY_PLUGIN,
                f"-Dartifact={artifact}",
                f"-DoutputDirectory={target.parent}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        while process.poll() is None:
            report("download", _bytes_in(watched), None, artifact)
            time.sleep(poll)
        log.seek(0)
        output = log.read()
    if process.returncode != 0 or not target.exists():
        raise PulsarUnavailable(f"mvn could not fetch {artifact}: {output[-2000:]}")
    size = float(target.stat().st_size)
    report("download", size, size, artifact)
    return target


class _CountingReader:
    """A file wrapper that reports how many compressed bytes the tar reader has consumed."""

    def __init__(self, raw: IO[bytes], total: int, report: Reporter) -> None:
        self.raw, self.total, self.report, self.done = raw, total, report, 0

    def read(self, size: int = -1) -> bytes:
        block = self.raw.read(size)
        self.done += len(block)
        self.report("unpack", self.done, self.total, "")
        return block


def pulsar_home(version: str = VERSION, report: Reporter = _quiet) -> Path:
    """The extracted distribution (extracted once; a marker file says the extraction finished)."""
    home = pulsar_cache() / f"apache-pulsar-{version}"
    marker = home / ".extracted"
    if marker.exists():
        return home
    archive = fetch(version, report)
    with open(pulsar_cache() / ".extract.lock", "wb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # concurrent sessions: one extracts, others wait
        if marker.exists():
            return home
        staging = Path(tempfile.mkdtemp(prefix="extract-", dir=pulsar_cache()))
        try:
            with open(archive, "rb") as raw:
                reader = _CountingReader(raw, archive.stat().st_size, report)
                with tarfile.open(fileobj=reader, mode="r|gz") as tar:  # type: ignore[call-overload]
                    tar.extractall(staging, filter="tar")
            if home.exists():
                shutil.rmtree(home)
            (staging / f"apache-pulsar-{version}").rename(home)
            marker.touch()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


def require_java() -> str:
    java = (
        shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin"))
        if os.environ.get("JAVA_HOME")
        else shutil.which("java")
    )
    if java is None:
        raise PulsarUnavailable("Java (17+) is not installed: Pulsar cannot run here")
    return java


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@dataclass
class PulsarBroker:
    """One standalone broker; `stop()` then `start()` reuses the same ports and data directory."""

    workdir: Path
    broker_port: int
    web_port: int
    bookie_port: int
    home: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    owns_workdir: bool = True

    @property
    def service_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.broker_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs" / "stdout.log"

    def _write_config(self, home: Path) -> Path:
        overrides = {
            "brokerServicePort": str(self.broker_port),
            "webServicePort": str(self.web_port),
            "bindAddress": "127.0.0.1",
            "advertisedAddress": "127.0.0.1",
            "clusterName": "standalone",
            "brokerDeleteInactiveTopicsEnabled": "false",
            # Exactly-once publishing relies on it (the events stage names its producers and sets
            # sequence ids): a resend the broker already stored is dropped. Production namespaces
            # need the same (docs/deployment.md).
            "brokerDeduplicationEnabled": "true",
        }
        lines = []
        for line in (home / "conf" / "standalone.conf").read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key in overrides and not line.lstrip().startswith("#"):
                line = f"{key}={overrides.pop(key)}"
            lines.append(line)
        lines += [f"{key}={value}" for key, value in overrides.items()]
        config = self.workdir / "standalone.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, timeout: float = 180.0, report: Reporter = _quiet) -> None:
        """Start (or restart) the broker and wait until a topic can be produced to."""
        require_java()
        home = self.home = self.home or pulsar_home(report=report)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        config = self._write_config(home)
        env = {
            **os.environ,
            "PULSAR_MEM": os.environ.get("ASGI_GUARD_PULSAR_MEM", DEFAULT_MEM),
            "PULSAR_GC": os.environ.get("ASGI_GUARD_PULSAR_GC", DEFAULT_GC),
            "PULSAR_GC_LOG": " ",
            "PULSAR_LOG_DIR": str(self.workdir / "logs"),
            "PULSAR_STANDALONE_CONF": str(config),
        }
        args = [
            str(home / "bin" / "pulsar"),
            "standalone",
            "-nfw",
            "-nss",
            "-a",
            "127.0.0.1",
            "-c",
            str(config),
            "--bookkeeper-port",
            str(self.bookie_port),
            "--bookkeeper-dir",
            str(self.workdir / "bookkeeper"),
            "--metadata-dir",
            str(self.workdir / "metadata"),
        ]
        log = open(self.log_file, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            args, stdout=log, stderr=log, cwd=self.workdir, env=env, start_new_session=True
        )
        log.close()
        try:
            self._wait_ready(timeout, report)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float, report: Reporter = _quiet) -> None:
        started = time.monotonic()
        deadline = started + timeout
        stage = "admin API"
        while time.monotonic() < deadline:
            report("start", time.monotonic() - started, timeout, f"waiting for the {stage}")
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pulsar standalone exited with {self.process.returncode}; see {self.log_file}"
                )
            with contextlib.suppress(OSError, ValueError):
                status, _ = _http_get(f"{self.admin_url}/admin/v2/namespaces/public/default")
                if status == 200:
                    stage = "produce"
                    if self._can_produce():
                        report("start", time.monotonic() - started, timeout, "ready")
                        return
            time.sleep(0.5)
        raise RuntimeError(
            f"pulsar standalone did not get past the {stage} check within {timeout}s; see {self.log_file}"
        )

    def _can_produce(self) -> bool:
        """Produce one message to a readiness topic (proves bookie, ledger and broker all work)."""
        try:
            import pulsar
        except ImportError:  # pragma: no cover - without the client, the admin API is the best we have
            status, _ = _http_get(f"{self.admin_url}/admin/v2/brokers/health", timeout=10)
            return status == 200
        quiet = logging.getLogger("asgi_guard_dev.pulsar.client")
        quiet.setLevel(logging.ERROR)
        client = pulsar.Client(self.service_url, operation_timeout_seconds=10, logger=quiet)
        try:
            producer = client.create_producer(
                "persistent://public/default/asgi-guard-readiness", send_timeout_millis=10_000
            )
            producer.send(b"ready")
            producer.close()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM the JVM's process group (SIGKILL after 30 s); data stays for a restart."""
        process = self.process
        self.process = None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def close(self) -> None:
        """Stop and, when this object made the work directory, remove it."""
        self.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PulsarBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_standalone(
    workdir: str | Path | None = None,
    timeout: float = 180.0,
    ports: tuple[int, int, int] | None = None,
    report: Reporter = _quiet,
) -> PulsarBroker:
    """A started broker on loopback: `ports` (broker, web, bookie) or free ones; a fresh temporary
    work directory by default."""
    directory = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="asgi-guard-pulsar-"))
    if ports is None:
        chosen: list[int] = []
        while len(chosen) < 3:
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        ports = (chosen[0], chosen[1], chosen[2])
    broker_port, web_port, bookie_port = ports
    broker = PulsarBroker(directory, broker_port, web_port, bookie_port, owns_workdir=workdir is None)
    broker.start(timeout, report)
    return broker


# -- state for the CLI (`asgi-guard services up|down pulsar`) ------------------------------------
def state_dir() -> Path:
    return cache_root() / "services" / "pulsar"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True
    return False


def status() -> dict[str, object]:
    """{"service": "pulsar", "state": "up" | "down" | "stale", "url", "admin", "pids"}: "up" only when
    the recorded process lives and its broker port accepts connections."""
    info = state_dir() / "state.json"
    if not info.exists():
        return {"service": "pulsar", "state": "down", "url": None, "admin": None, "pids": []}
    try:
        data = json.loads(info.read_text())
        pid, url = int(data["pid"]), str(data["url"])
    except (ValueError, KeyError, TypeError):
        return {"service": "pulsar", "state": "stale", "url": None, "admin": None, "pids": []}
    port = int(url.rsplit(":", 1)[1])
    alive = _pid_alive(pid) and _port_open(port)
    return {
        "service": "pulsar",
        "state": "up" if alive else "stale",
        "url": url,
        "admin": data.get("admin"),
        "pids": [pid],
    }


def up(report: Reporter = _quiet) -> tuple[str, bool]:
    """Start a broker in the background, or find the running one: (service URL, was already up).
    A state file whose broker died is cleared first."""
    state = state_dir()
    current = status()
    if current["state"] == "up":
        return str(current["url"]), True
    if current["state"] == "stale":  # its process is gone or no longer serves: forget it (kill nothing:
        shutil.rmtree(state, ignore_errors=True)  # the pid may belong to someone else by now)
    usual = (6650, 8080, 3181)
    broker = start_standalone(
        workdir=state, ports=usual if all(map(is_port_free, usual)) else None, report=report
    )
    (state / "state.json").write_text(
        json.dumps({"pid": broker.pid, "url": broker.service_url, "admin": broker.admin_url})
    )
    return broker.service_url, False


def down() -> bool:
    """Stop what `up()` started; False when nothing was running (a stale state file is cleared)."""
    info = state_dir() / "state.json"
    if status()["state"] != "up":
        shutil.rmtree(state_dir(), ignore_errors=True)
        return False
    pid = int(json.loads(info.read_text())["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(state_dir(), ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """`python -m asgi_guard_dev.pulsar fetch|up|down|run`."""
    command = (argv if argv is not None else sys.argv[1:] or ["fetch"])[0]
    if command == "fetch":
        print(pulsar_home())
    elif command == "up":
        print(up()[0])
    elif command == "down":
        print("stopped" if down() else "not running")
    elif command == "run":
        started = time.monotonic()
        with start_standalone() as broker:
            print(f"{broker.service_url} ready in {time.monotonic() - started:.1f}s", flush=True)
    else:
        print("usage: python -m asgi_guard_dev.pulsar fetch|up|down|run", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
