"""deploy/docker/Dockerfile and deploy/kubernetes/*.yaml agree with the settings they configure.

The image is not built here (no Docker engine); these checks parse the files.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from asgi_guard import GuardSettings

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
KUBE = ROOT / "deploy" / "kubernetes"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docs() -> list[dict[str, Any]]:
    found = []
    for path in sorted(KUBE.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in docs() if d["kind"] == kind]


def app_container() -> tuple[dict[str, Any], dict[str, Any]]:
    (app,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "asgi-guard-demo"]
    pod = app["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_dockerfile_installs_the_package_with_existing_extras_and_runs_uvicorn() -> None:
    steps = instructions()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    (run,) = [args for op, args in steps if op == "RUN"]
    installs = re.findall(r'pip install [^"]*"/src\[([a-z,]+)\]"', run)
    assert installs, run
    wanted = set(installs[0].split(","))
    assert {"valkey", "pulsar", "demo"} <= wanted <= extras  # demo brings uvicorn and fastapi
    (cmd,) = [args for op, args in steps if op == "CMD"]
    argv = yaml.safe_load(cmd)  # the exec form is a JSON array
    assert argv[0] == "uvicorn"
    module, _, attribute = argv[1].partition(":")
    assert attribute == "app" and importlib.util.find_spec(module) is not None
    env = dict(word.split("=", 1) for op, args in steps if op == "ENV" for word in shlex.split(args))
    assert env["ASGI_GUARD_HEALTH_PATH"] == "/_guard/health"
    assert env["ASGI_GUARD_OUTBOX_PATH"].startswith("/var/lib/asgi-guard/")  # the directory it chowns


def test_probes_hit_the_health_path_the_settings_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    _pod, container = app_container()
    env = env_of(container)
    monkeypatch.setenv("ASGI_GUARD_HEALTH_PATH", env["ASGI_GUARD_HEALTH_PATH"])
    health = GuardSettings(_env_file=None).health_path  # type: ignore[call-arg]
    assert health == "/_guard/health"
    ready = urlsplit(container["readinessProbe"]["httpGet"]["path"])
    live = urlsplit(container["livenessProbe"]["httpGet"]["path"])
    assert (ready.path, ready.query) == (health, "")
    assert (live.path, live.query) == (health, "probe=live")  # liveness never touches Valkey
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    assert str(ports["http"]) in container["args"]


def test_outbox_lives_on_the_persistent_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    pod, container = app_container()
    env = env_of(container)
    monkeypatch.setenv("ASGI_GUARD_OUTBOX_PATH", env["ASGI_GUARD_OUTBOX_PATH"])
    outbox = PurePosixPath(GuardSettings(_env_file=None).outbox_path or "")  # type: ignore[call-arg]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert str(outbox.parent) in mounts
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[str(outbox.parent)]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in of_kind("PersistentVolumeClaim")}


def test_valkey_url_comes_from_the_secret() -> None:
    for deployment in of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ref = env_of(container)["ASGI_GUARD_VALKEY_URL"]["secretKeyRef"]
        (secret,) = [d for d in of_kind("Secret") if d["metadata"]["name"] == ref["name"]]
        url = secret["stringData"][ref["key"]]
        assert url.startswith("valkey+sentinel://") and urlsplit(url).path == "/mymaster"
