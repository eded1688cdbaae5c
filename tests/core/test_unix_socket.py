"""Served on a unix socket (`uvicorn --uds`, behind nginx): the ASGI peer has no address.

Attack: two clients reach the app through the same proxy socket. Without a way to trust the socket's
peer, both were the anonymous address "unknown": one rate-limit bucket, one idempotency owner (A's stored
answer replayed to B for the same Idempotency-Key). `trusted_proxies=["unix"]` makes the socket peer a
trusted proxy whose forwarding header names the client; without it, no per-client state is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
A = {"X-Forwarded-For": "198.51.100.7"}
B = {"X-Forwarded-For": "203.0.113.9"}


def _serve(tmp_path: Path, trusted: list[str] | None, *flags: str) -> Iterator[httpx.Client]:
    sock = tmp_path / "app.sock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("ASGI_GUARD_TRUSTED_PROXIES", None)
    if trusted is not None:
        env["ASGI_GUARD_TRUSTED_PROXIES"] = json.dumps(trusted)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "_uds_app:app", "--uds", str(sock), "--log-level", "warning", *flags],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://proxy", timeout=5)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read() if proc.stdout else "uvicorn exited")
            try:
                client.get("/nothing-here")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("uvicorn did not start") from None
                time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        output = proc.stdout.read() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        _serve.output = output  # type: ignore[attr-defined]


@pytest.fixture
def trusted_unix(tmp_path: Path) -> Iterator[httpx.Client]:
    yield from _serve(tmp_path, ["unix"])


@pytest.fixture
def untrusted_unix(tmp_path: Path) -> Iterator[httpx.Client]:
    yield from _serve(tmp_path, None)


def _order(client: httpx.Client, headers: dict[str, str], key: str, body: str) -> httpx.Response:
    return client.post("/orders", headers={**headers, "Idempotency-Key": key}, content=body)


def test_trusted_unix_peer_gives_each_client_its_own_bucket(trusted_unix: httpx.Client) -> None:
    for _ in range(2):
        assert trusted_unix.get("/limited", headers=A).status_code == 200
    assert trusted_unix.get("/limited", headers=A).status_code == 429
    response = trusted_unix.get("/limited", headers=B)  # B never spent anything
    assert response.status_code == 200, response.text
    assert response.json()["client"] == "203.0.113.9"


def test_trusted_unix_peer_uses_the_rightmost_untrusted_hop(trusted_unix: httpx.Client) -> None:
    # the client wrote 10.0.0.1 itself; the proxy appended the address it saw
    response = trusted_unix.get("/limited", headers={"X-Forwarded-For": "10.0.0.1, 198.51.100.30"})
    assert response.json()["client"] == "198.51.100.30"


def test_trusted_unix_peer_never_replays_one_clients_answer_to_another(trusted_unix: httpx.Client) -> None:
    first = _order(trusted_unix, A, "key-1", "same body")
    assert first.status_code == 200
    assert _order(trusted_unix, A, "key-1", "same body").json() == first.json()  # A's own retry: replayed
    other = _order(trusted_unix, B, "key-1", "same body")
    assert other.status_code == 200
    assert other.json()["order"] != first.json()["order"]
    assert other.json()["client"] == "203.0.113.9"


def test_untrusted_unix_peer_shares_no_stored_answer(untrusted_unix: httpx.Client) -> None:
    """Without "unix" trusted the guard cannot tell clients apart: it must not hand A's answer to B."""
    first = _order(untrusted_unix, A, "key-2", "same body")
    other = _order(untrusted_unix, B, "key-2", "same body")
    assert first.status_code == 200
    assert other.status_code != 200 or other.json()["order"] != first.json()["order"]
    assert "idempotency-replayed" not in {k.lower() for k in other.headers}
