"""asgi_guard_dev.pulsar's download and unpack report progress, verify Maven's .sha1, and keep the
state file honest (no broker is started here: tests/events does that)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_guard_dev import pulsar


@pytest.fixture
def files_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server for a directory (stands in for the Maven repository's layout)."""
    root = tmp_path / "repo"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def fake_distribution(version: str, size: int = 3 << 20) -> bytes:
    """A small tar.gz laid out like the Pulsar distribution (incompressible payload, so it has size)."""
    import os

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = os.urandom(size)
        info = tarfile.TarInfo(f"apache-pulsar-{version}/lib/blob.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        conf = b"brokerServicePort=6650\n"
        info = tarfile.TarInfo(f"apache-pulsar-{version}/conf/standalone.conf")
        info.size = len(conf)
        tar.addfile(info, io.BytesIO(conf))
    return buffer.getvalue()


def test_download_reports_bytes_and_checks_sha1(files_server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = files_server
    data = fake_distribution("9.9.9")
    (root / "dist.tar.gz").write_bytes(data)
    (root / "dist.tar.gz.sha1").write_text(hashlib.sha1(data).hexdigest() + "  dist.tar.gz\n")
    reports: list[tuple[str, float, float | None]] = []
    target = tmp_path / "out.tar.gz"
    pulsar._download(f"{base}/dist.tar.gz", target, lambda t, d, n, _: reports.append((t, d, n)))
    assert target.read_bytes() == data
    assert reports[0] == ("download", 0, float(len(data)))
    assert reports[-1] == ("download", len(data), float(len(data)))
    assert len(reports) >= 4 and [r[1] for r in reports] == sorted(r[1] for r in reports)

    (root / "dist.tar.gz.sha1").write_text("0" * 40)
    corrupt = tmp_path / "corrupt.tar.gz"
    with pytest.raises(ValueError, match="sha1"):
        pulsar._download(f"{base}/dist.tar.gz", corrupt, lambda *a: None)
    assert not corrupt.exists() and not corrupt.with_name("corrupt.tar.gz.part").exists()


def test_fetch_and_unpack_report_progress(
    files_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = files_server
    version = "9.9.9"
    data = fake_distribution(version)
    url_path = f"org/apache/pulsar/pulsar-server-distribution/{version}"
    (root / url_path).mkdir(parents=True)
    name = f"pulsar-server-distribution-{version}-bin.tar.gz"
    (root / url_path / name).write_bytes(data)
    (root / url_path / (name + ".sha1")).write_text(hashlib.sha1(data).hexdigest())
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pulsar, "MAVEN_REPO", base)
    tasks: dict[str, list[tuple[float, float | None]]] = {}
    home = pulsar.pulsar_home(version, lambda t, d, n, _: tasks.setdefault(t, []).append((d, n)))
    assert (home / "conf" / "standalone.conf").exists() and (home / ".extracted").exists()
    assert tasks["download"][-1] == (len(data), len(data))
    assert tasks["unpack"][-1][0] == len(data) == tasks["unpack"][-1][1]
    assert len(tasks["unpack"]) > 2
    assert pulsar.pulsar_home(version) == home  # cached: no second download


def test_status_up_down_with_stale_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path))
    assert pulsar.status()["state"] == "down"
    state = pulsar.state_dir()
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps({"pid": 2**22 + 11, "url": "pulsar://127.0.0.1:1"}))
    assert pulsar.status()["state"] == "stale"
    assert pulsar.down() is False and not state.exists()
    state.mkdir(parents=True)
    (state / "state.json").write_text("not json")
    assert pulsar.status()["state"] == "stale"
