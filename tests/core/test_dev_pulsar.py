"""asgi_guard_dev.pulsar's Maven fetch and unpack report progress, and the state file stays
honest (no broker is started here: tests/events does that)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from asgi_guard_dev import pulsar


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


FAKE_MVN = """#!/usr/bin/env python3
# Stands in for `mvn dependency:copy`: writes the artifact into the local repository in chunks (as
# Maven does while downloading), then copies it to -DoutputDirectory.
import os, pathlib, shutil, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("-D"))
group, name, version, kind, classifier = args["artifact"].split(":")
repo = pathlib.Path.home() / ".m2/repository" / group.replace(".", "/") / name / version
repo.mkdir(parents=True, exist_ok=True)
data = pathlib.Path(os.environ["FAKE_DIST"]).read_bytes()
final = f"{name}-{version}-{classifier}.{kind}"
with open(repo / (final + ".part"), "wb") as out:
    for i in range(0, len(data), len(data) // 6 + 1):
        out.write(data[i : i + len(data) // 6 + 1]); out.flush(); time.sleep(0.15)
os.replace(repo / (final + ".part"), repo / final)
shutil.copy(repo / final, pathlib.Path(args["outputDirectory"]) / final)
"""


@pytest.fixture
def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `mvn` (ASGI_GUARD_MVN) and a private HOME and cache; returns the fake distribution."""
    mvn = tmp_path / "mvn"
    mvn.write_text(FAKE_MVN)
    mvn.chmod(0o755)
    dist = tmp_path / "dist.tar.gz"
    dist.write_bytes(fake_distribution("9.9.9"))
    monkeypatch.setenv("ASGI_GUARD_MVN", str(mvn))
    monkeypatch.setenv("FAKE_DIST", str(dist))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path / "cache"))
    return dist


def test_fetch_and_unpack_report_progress(fake_maven: Path) -> None:
    """Maven fetches; the bytes arriving in its local repository are reported, then the unpack."""
    version, data = "9.9.9", fake_maven.read_bytes()
    tasks: dict[str, list[tuple[float, float | None]]] = {}
    home = pulsar.pulsar_home(version, lambda t, d, n, _: tasks.setdefault(t, []).append((d, n)))
    assert (home / "conf" / "standalone.conf").exists() and (home / ".extracted").exists()
    downloads = tasks["download"]
    assert downloads[-1] == (len(data), len(data))
    growing = [done for done, total in downloads if total is None and 0 < done < len(data)]
    assert growing, f"no progress while mvn ran: {downloads}"
    assert [d for d, _ in downloads] == sorted(d for d, _ in downloads)
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
